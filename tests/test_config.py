"""Configuration: defaults, file, environment and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest
from interlock.config import ConfigError, ServerConfig, describe, load_config


def test_defaults_are_the_embedded_quick_start() -> None:
    c = load_config(env={})
    assert (c.engine, c.listen, c.insecure, c.policy_dir) == (
        "regorus",
        "127.0.0.1:50051",
        True,
        "policies",
    )
    assert c.switch_overrides() == {}


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "interlock.yaml"
    f.write_text(
        "engine: opa\nmax_concurrent_live: 3\ndry_run_only: true\nlisten: 127.0.0.1:6000\n"
    )
    env = {"INTERLOCK_MAX_CONCURRENT_LIVE": "7", "INTERLOCK_FSYNC": "off"}
    c = load_config(file=f, env=env, overrides={"listen": "127.0.0.1:7000", "engine": None})
    assert c.engine == "opa"  # file (a None flag does not override)
    assert c.max_concurrent_live == 7  # env beats file
    assert c.listen == "127.0.0.1:7000"  # flag beats both
    assert c.fsync is False and c.dry_run_only is True
    assert c.switch_overrides() == {"max_concurrent_live": 7, "dry_run_only": True}


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("eval_threads: 4\n")
    assert load_config(env={"INTERLOCK_CONFIG": str(f)}).eval_threads == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INTERLOCK_ENGINE": "wasm"}, "engine: must be one of regorus, embedded, opa"),
        ({"INTERLOCK_EVAL_THREADS": "many"}, "eval_threads"),
        ({"INTERLOCK_FSYNC": "perhaps"}, "fsync: not a boolean"),
        ({"INTERLOCK_LIVE_CONFIDENCE_FLOOR": "1.5"}, "live_confidence_floor: must be in [0, 1]"),
        ({"INTERLOCK_LISTEN": "0.0.0.0:50051"}, "may only listen on loopback"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(env=env)


def test_unknown_file_fields_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("engnie: opa\n")
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(file=f, env={})


def test_every_field_is_documented() -> None:
    rows = describe()
    assert [name for name, _, _ in rows] == list(ServerConfig.__dataclass_fields__)
    assert all(doc for _, _, doc in rows)


def test_the_configuration_page_lists_every_field() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs/configuration.md").read_text()  # make docs
    for name, _, _ in describe():
        assert f"| `{name}` |" in page, f"docs/configuration.md lacks {name}"


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:notaport", ":80", "127.0.0.1:70000"])
def test_listen_addresses_must_be_host_and_port(value: str) -> None:
    with pytest.raises(ConfigError, match="must be host:port"):
        load_config(env={"INTERLOCK_METRICS_LISTEN": value})
