"""OPA's wasm target on wasmtime-py beside `opa bench` and regorus (issue 14).

    .venv/bin/python bench/bench_wasm.py                # policies/, 5 rounds
    .venv/bin/python bench/bench_wasm.py --rounds 9 --seconds 2

The policy set is built with the pinned OPA (`opa build -t wasm -e
interlock/decision/main`), policy.wasm is loaded with wasmtime-py through
OPA's wasm ABI (bench/wasm/opa_wasm.py), and the built-ins the module does
not carry are given by the host (bench/wasm/builtins.py: sprintf). Before
timing, the wasm answer for decision.main must equal `opa eval`'s, as JSON,
on each input (dry-run, live-approval, denied); so must regorus's.

Timing is decision.main on the dry-run input, in rounds: each round runs
`opa bench` once, then batches of the in-process rows alternating (~20 ms
each, for --seconds). The figure is the median over rounds; "spread" is the
lowest and highest round. Rows:

  opa bench        OPA's own `opa bench`: the median of
                   timer_rego_query_eval_ns, the evaluation alone
  wasm eval        policy.wasm, the evaluation alone: input already parsed
                   into wasm memory, reset the heap, `eval`, get the result
                   address (nothing decoded)
  wasm call        policy.wasm as a server would pay it: input dict to JSON
                   (orjson), into wasm memory, `opa_eval` (ABI 1.2, one call),
                   the JSON result read back and parsed to a dict
  regorus eval     regorus (engines/regorus-py), the evaluation alone:
                   eval_rule with the input already set
  regorus call     regorus as the server pays it (RegorusPolicy.query_sync)

  µs               microseconds per evaluation (median over rounds)
  /opa             the row's µs over `opa bench`'s, same run

Below the table: the host built-in calls (sprintf) an evaluation makes and
the wall time inside them (each dumps its arguments to JSON, runs Python,
parses the result back: several wasmtime-py calls), the wasm eval row less
that time (derived, not timed alone), and the cost of one bare wasmtime-py
call (opa_heap_ptr_get), the binding's price of a crossing.

Everything is local; nothing goes over the network.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/ is on sys.path when this file runs as a script.
from bench_policy import (
    BenchError,
    _interleaved,
    _regorus_version,
    build_inputs,
    find_opa,
    opa_bench,
    opa_eval,
    regorus_policy,
    write_bundle,
)
from interlock.policy.bundle import PolicySet
from interlock.policy.regorus_engine import IMPORT_ERROR as REGORUS_MISSING
from wasm.builtins import HOST_BUILTINS
from wasm.opa_wasm import OpaWasmError, OpaWasmPolicy

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = "interlock/decision/main"
QUERY = "data.interlock.decision.main"
CHECKED = ("dry-run", "live-approval", "denied")
TIMED = "dry-run"


def build_wasm(opa: str, policy_set: PolicySet, tmp: Path) -> tuple[bytes, Any, str]:
    """(policy.wasm, data.json, a note): `opa build -t wasm` of the set, tests left out.

    write_bundle writes PolicySet.files, which holds no *_test.rego. OPA
    v1.22.2's wasm planner fails ("invalid path value type") on this set
    because rules annotated `entrypoint: true` become extra wasm entrypoints
    and one of them trips it; the build is then retried with those
    annotation lines dropped, so that only -e decision/main is planned. The
    rules themselves are unchanged.
    """
    src = tmp / "wasm-src"
    write_bundle(policy_set, src)
    out = tmp / "wasm-bundle.tar.gz"
    cmd = [opa, "build", "-b", "-t", "wasm", "-e", ENTRYPOINT, "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    note = "opa build -t wasm of the bundle as written"
    if proc.returncode != 0:
        first = (proc.stderr or proc.stdout).strip()
        for rego in src.rglob("*.rego"):
            lines = rego.read_text().splitlines(keepends=True)
            rego.write_text("".join(x for x in lines if x.strip() != "# entrypoint: true"))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise BenchError(f"opa build -t wasm failed: {first}\nthen: {proc.stderr}")
        note = f"opa build -t wasm: {first!r} as written; built with `# entrypoint: true` dropped"
    with tarfile.open(out) as tar:
        files = {m.name.lstrip("/"): m for m in tar.getmembers() if m.isfile()}
        wasm = tar.extractfile(files["policy.wasm"])
        data = tar.extractfile(files["data.json"])
        if wasm is None or data is None:
            raise BenchError("the wasm bundle has no policy.wasm or data.json")
        return wasm.read(), json.loads(data.read()), note


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def check(
    opa: str, bundle_dir: Path, input_files: dict[str, Path], engines: dict[str, Any]
) -> None:
    """Every engine's decision.main equals `opa eval`'s, as JSON, on each checked input."""
    for name in CHECKED:
        want = opa_eval(opa, bundle_dir, input_files[name], QUERY)
        for engine, answer in engines[name].items():
            if canonical(answer) != canonical(want):
                raise BenchError(
                    f"{engine} and opa eval disagree on {QUERY} ({name}):\n"
                    f"  {engine}: {canonical(answer)}\n  opa eval: {canonical(want)}"
                )
        print(f"  {name}: {', '.join(engines[name])} == opa eval", file=sys.stderr)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((x.split(":", 1)[1].strip() for x in f if x.startswith("model name")), cpu)
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"nproc {os.cpu_count()}, {cpu}, load average {load}, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> int:
    opa = find_opa()
    opa_version = subprocess.run([opa, "version"], capture_output=True, text=True, timeout=10)
    policy_set = PolicySet.from_dir(Path(args.policy_dir))
    inputs = build_inputs(policy_set)
    with tempfile.TemporaryDirectory(prefix="bench-wasm-") as tmp_name:
        tmp = Path(tmp_name)
        bundle_dir = tmp / "bundle"
        write_bundle(policy_set, bundle_dir)
        input_files = {}
        for name in CHECKED:
            input_files[name] = tmp / f"input-{name}.json"
            input_files[name].write_text(json.dumps(inputs[name]))
        wasm, data, note = build_wasm(opa, policy_set, tmp)
        # Two instances: opa_eval writes its input where eval-alone keeps its own.
        call_policy = OpaWasmPolicy(wasm, data, HOST_BUILTINS)
        eval_policy = OpaWasmPolicy(wasm, data, HOST_BUILTINS)
        for p in (call_policy, eval_policy):
            p.set_entrypoint(ENTRYPOINT)
        rgs = None if REGORUS_MISSING else regorus_policy(policy_set)
        answers: dict[str, dict[str, Any]] = {}
        for name in CHECKED:
            eval_policy.set_input(inputs[name])
            eval_policy.eval_only()
            answers[name] = {
                "wasm call": call_policy.evaluate(inputs[name]),
                "wasm eval": eval_policy.result(),
            }
            if rgs is not None:
                answers[name]["regorus"] = rgs.query_sync(ENTRYPOINT, inputs[name])
        print(f"# {note}", file=sys.stderr)
        check(opa, bundle_dir, input_files, answers)

        policy_input = inputs[TIMED]
        eval_policy.set_input(policy_input)
        for p in (call_policy, eval_policy):
            p.evals, p.host_calls, p.host_seconds = 0, 0, 0.0
        fns: list[Callable[[], object]] = [
            eval_policy.eval_only,
            lambda: call_policy.evaluate(policy_input),
        ]
        names = ["wasm eval", "wasm call"]
        bare = eval_policy.bare_call
        if rgs is not None:
            engine = rgs._mine()
            engine.set_input_json(json.dumps(policy_input))
            rule = QUERY
            fns += [
                lambda: engine.eval_rule(rule),
                lambda: rgs.query_sync(ENTRYPOINT, policy_input),
            ]
            names += ["regorus eval", "regorus call"]
        else:
            print(f"regorus left out: {REGORUS_MISSING}", file=sys.stderr)
        samples: dict[str, list[float]] = {n: [] for n in ["opa bench", *names]}
        bare_us: list[float] = []
        for r in range(args.rounds):
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            samples["opa bench"].append(
                opa_bench(opa, bundle_dir, input_files[TIMED], QUERY, args.count)
            )
            for n, us in zip(names, _interleaved(tuple(fns), args.seconds), strict=True):
                samples[n].append(us)
            bare_us.append(_interleaved((bare,), 0.05)[0])
        # The answer after all the timed evaluations is still OPA's.
        after = call_policy.evaluate(policy_input), eval_policy.result()
        if canonical(after[0]) != canonical(answers[TIMED]["wasm call"]) or canonical(
            after[1]
        ) != canonical(answers[TIMED]["wasm call"]):
            raise BenchError("the wasm answer changed during the timed runs")

    version = opa_version.stdout.splitlines()[0].removeprefix("Version: ")
    print(f"# {machine()}")
    print(
        f"# OPA {version}, wasmtime {importlib.metadata.version('wasmtime')}, "
        f"wasm ABI {call_policy.abi[0]}.{call_policy.abi[1]}, policy.wasm {len(wasm)} bytes, "
        f"host built-ins {', '.join(call_policy.host_builtins) or 'none'}, "
        f"regorus {_regorus_version()}"
    )
    print(
        f"# {QUERY} on the {TIMED} input; median of {args.rounds} rounds "
        f"(opa bench --count {args.count}; in-process {args.seconds:g} s a round)"
    )
    opa_us = statistics.median(samples["opa bench"])
    lines = [("row", "µs", "/opa", "spread µs")]
    for n, values in samples.items():
        us = statistics.median(values)
        lines.append(
            (n, f"{us:.1f}", f"{us / opa_us:.2f}x", f"{min(values):.1f}-{max(values):.1f}")
        )
    widths = [max(len(x[i]) for x in lines) for i in range(4)]
    for k, line in enumerate(lines):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if k == 0:
            print("-" * (sum(widths) + 6))
    for n, p in (("wasm eval", eval_policy), ("wasm call", call_policy)):
        evals = max(p.evals, 1)
        host_us = p.host_seconds / evals * 1e6
        print(
            f"{n}: {p.host_calls / evals:.0f} host built-in calls an evaluation, "
            f"{host_us:.1f} µs in them ({host_us / statistics.median(samples[n]):.0%})"
        )
        if n == "wasm eval":
            rest = statistics.median(samples[n]) - host_us
            print(f"wasm eval less that host time: {rest:.1f} µs ({rest / opa_us:.2f}x opa)")
    print(f"one bare wasmtime-py call (opa_heap_ptr_get): {statistics.median(bare_us):.1f} µs")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--policy-dir", default=str(REPO / "policies"), help="the policy set (default policies/)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5); median taken")
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="in-process seconds a round (default 1)"
    )
    parser.add_argument(
        "--count", type=int, default=1, help="`opa bench --count` a round (default 1)"
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (BenchError, OpaWasmError) as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
