"""Write docs/configuration.md from the ServerConfig fields (make docs)."""

from pathlib import Path

from interlock.config import describe

HEADER = """# Configuration

The server reads its configuration once, at start-up. Each layer overrides the one before:

1. the defaults below;
2. a YAML file given by `--config FILE` or `INTERLOCK_CONFIG` (keys are the field names);
3. environment variables `INTERLOCK_<FIELD>` in upper case, e.g. `INTERLOCK_ENGINE=opa`;
4. command-line flags of `interlock serve`, e.g. `--engine opa`.

A bad value stops the server with a one-line message naming the field. The
switch overrides (`dry_run_only`, `max_concurrent_live`, `live_confidence_floor`,
`approval_required_for_high_risk`) are unset by default: the policy bundle's
`interlock/config/data.yaml` then decides. When set, they are sent to the policy
in `input.switches` and win over the bundle's defaults.

| field | default | meaning |
| --- | --- | --- |
"""

FOOTER = """
Example file:

```yaml
listen: 127.0.0.1:50051
engine: opa
opa_url: http://127.0.0.1:8181
data_dir: /var/lib/interlock
max_concurrent_live: 3
```
"""


def main() -> None:
    rows = "".join(f"| `{name}` | `{default}` | {doc} |\n" for name, default, doc in describe())
    target = Path(__file__).with_name("configuration.md")
    target.write_text(HEADER + rows + FOOTER)


if __name__ == "__main__":
    main()
