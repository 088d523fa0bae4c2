"""The cost of one policy evaluation: OPA's `opa bench` beside the embedded engine and regorus.

    .venv/bin/python bench/bench_policy.py                        # policies/
    .venv/bin/python bench/bench_policy.py --policy-dir OLD --policy-dir policies   # before/after

For each case (an entrypoint rule and a representative input) it reports:

  opa µs       OPA's own `opa bench` (the pinned binary): the median of
               `timer_rego_query_eval_ns`, the evaluation alone
  embedded µs  the embedded engine (regopy, built as the server builds it):
               the median over timed batches of `query_bundle_entrypoint`
               with the input already set, the evaluation alone
  emb/opa      the ratio of the two, in the same run
  call µs      the embedded engine as the server pays it per decision
               (EmbeddedPolicy.query_sync): set the input, evaluate, parse
               the JSON output
  api µs       the same through regopy's public API (regopy.Input, Output):
               the server's path before it called rego-cpp's C API directly
  rgs µs       regorus (engine: regorus, the project's binding
               engines/regorus-py), the evaluation alone: eval_rule with the
               input already set
  rgs/opa      its ratio to OPA, in the same run
  rgs call µs  regorus as the server pays it (RegorusPolicy.query_sync):
               input to JSON text, evaluate, parse the JSON answer

With two policy dirs, the first is "before" and the second "after", and the
table gains the after/before ratio of each engine. Inputs are built the way
the server builds them (DecisionService.build_input over the catalog and
agents of the policy set), so they follow the server. Everything is local:
`opa bench` makes no network calls. bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import regopy
from interlock.config import ServerConfig
from interlock.contracts import Catalog
from interlock.decisions import DecisionService, ToolCall
from interlock.policy.bundle import PolicySet
from interlock.policy.embedded import EmbeddedEngine, EmbeddedPolicy
from interlock.policy.regorus_engine import IMPORT_ERROR as REGORUS_MISSING
from interlock.policy.regorus_engine import RegorusEngine, RegorusPolicy

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    """The rule, as a data reference (data.interlock.decision.main)."""
    input_name: str
    expect: Any = None
    """A value the first engine's answer must contain (a dict's items), or None."""

    @property
    def entrypoint(self) -> str:
        return self.query.removeprefix("data.").replace(".", "/")


# Representative calls: the first is bench_decisions.py's call (ALLOW, DRY_RUN),
# the common case; the others take the LIVE + approval and the DENY branches.
CALLS = {
    "dry-run": ToolCall(
        agent_id="agent1",
        tool="vision_inspect",
        arguments={"target": "login button"},
        confidence=0.6,
    ),
    "live-approval": ToolCall(
        agent_id="ops",
        tool="transfer_funds",
        arguments={"amount_cents": 1200, "to_account": "acct-42"},
        confidence=0.9,
    ),
    "denied": ToolCall(
        agent_id="agent1",
        tool="button_click",
        arguments={"target": "submit"},
        confidence=0.9,
    ),
}

AUTHZ_INPUT = {
    "method": "RequestToolCall",
    "principal": {"id": "agent1", "kind": "agent", "roles": [], "agents": ["agent1"]},
    "request": {"agent_id": "agent1"},
}

CASES = (
    Case("decision.main", "data.interlock.decision.main", "dry-run", {"verdict": "ALLOW"}),
    Case(
        "decision.main",
        "data.interlock.decision.main",
        "live-approval",
        {"verdict": "PENDING_APPROVAL"},
    ),
    Case("decision.main", "data.interlock.decision.main", "denied", {"verdict": "DENY"}),
    Case("permissions.allowed", "data.interlock.permissions.allowed", "dry-run"),
    Case("escalation.mode", "data.interlock.escalation.mode", "dry-run"),
    Case("approvals.requirement", "data.interlock.approvals.requirement", "live-approval"),
    Case("authz.main", "data.interlock.authz.main", "authz", {"allow": True}),
)


def build_inputs(policy_set: PolicySet) -> dict[str, dict[str, Any]]:
    """The inputs, as DecisionService.build_input makes them (no switch overrides)."""
    catalog = Catalog.from_data(policy_set.data)
    service = types.SimpleNamespace(config=ServerConfig(), live_in_flight=lambda: 0)
    inputs = {
        name: DecisionService.build_input(service, call, catalog, live_in_flight=0)  # type: ignore[arg-type]
        for name, call in CALLS.items()
    }
    inputs["authz"] = AUTHZ_INPUT
    return inputs


# OPA -----------------------------------------------------------------------


def find_opa() -> str:
    for candidate in (os.environ.get("INTERLOCK_OPA_BIN"), str(REPO / ".tools/bin/opa")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("opa")
    if found:
        return found
    raise BenchError(
        "the opa binary was not found (INTERLOCK_OPA_BIN, .tools/bin/opa or PATH); "
        "run `make opa`, or leave OPA out with --engines embedded"
    )


def write_bundle(policy_set: PolicySet, root: Path) -> None:
    """The files the server loads (no tests), as a bundle folder for `opa bench -b`."""
    for rel, content in policy_set.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def opa_bench(opa: str, bundle: Path, input_file: Path, query: str, count: int) -> float:
    """`opa bench`'s median query-eval time in µs (the median of `count` runs)."""
    proc = subprocess.run(
        [
            opa,
            "bench",
            "-b",
            str(bundle),
            "-i",
            str(input_file),
            "--format",
            "json",
            "--count",
            str(count),
            query,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise BenchError(f"opa bench {query} failed:\n{proc.stderr or proc.stdout}")
    medians = []
    decoder = json.JSONDecoder()
    text = proc.stdout.strip()
    while text:  # --count N prints N JSON documents one after another
        doc, end = decoder.raw_decode(text)
        medians.append(doc["Extra"]["histogram_timer_rego_query_eval_ns_median"] / 1000)
        text = text[end:].strip()
    return statistics.median(medians)


def opa_eval(opa: str, bundle: Path, input_file: Path, query: str) -> Any:
    proc = subprocess.run(
        [opa, "eval", "-b", str(bundle), "-i", str(input_file), "--format", "json", query],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise BenchError(f"opa eval {query} failed:\n{proc.stderr or proc.stdout}")
    result = json.loads(proc.stdout).get("result") or [{}]
    return result[0]["expressions"][0]["value"]


# The embedded engine -------------------------------------------------------


def embedded_bundle(policy_set: PolicySet, entrypoints: list[str]) -> regopy.Bundle:
    """A regopy bundle built as interlock.policy.embedded builds the server's."""
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    for path in sorted(policy_set.modules):
        interp.add_module(path, policy_set.modules[path])
    interp.add_data(dict(policy_set.data))
    bundle = interp.build(None, entrypoints)
    if not bundle.ok():
        raise BenchError("regopy could not build the policy set")
    return bundle


def embedded_answer(bundle: regopy.Bundle, entrypoint: str, policy_input: Any) -> Any:
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    interp.set_input(regopy.Input(policy_input))
    output = interp.query_bundle_entrypoint(bundle, entrypoint)
    if not output.ok():
        raise BenchError(f"embedded engine: {output}")
    return json.loads(str(output))["expressions"][0]


def embedded_bench(
    bundle: regopy.Bundle, entrypoint: str, policy_input: Any, seconds: float
) -> tuple[float, float, float]:
    """(eval µs, call µs, regopy-API call µs): medians over interleaved ~20 ms batches.

    eval: `query_bundle_entrypoint` with the input already set. call: the
    server's path, EmbeddedPolicy.query_sync (input in, value out). The
    regopy-API call: the same through regopy's public API (regopy.Input, an
    Output, its JSON parsed): the server's path before it called rego-cpp's
    C API directly. Batches of the three alternate, so drifting load touches
    them alike.
    """
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    interp.set_input(regopy.Input(policy_input))
    native = EmbeddedPolicy(EmbeddedEngine(1, native=True), "bench", bundle)
    public = EmbeddedPolicy(EmbeddedEngine(1, native=False), "bench", bundle)
    if native.query_sync(entrypoint, policy_input) != public.query_sync(entrypoint, policy_input):
        raise BenchError(f"the embedded engine's two call paths disagree on {entrypoint}")

    def evaluate() -> None:
        interp.query_bundle_entrypoint(bundle, entrypoint)

    def call() -> None:
        native.query_sync(entrypoint, policy_input)

    def api_call() -> None:
        public.query_sync(entrypoint, policy_input)

    fns = (evaluate, call, api_call)
    for one in fns:  # warm-up
        for _ in range(20):
            one()
    n = 1
    while True:  # size a batch to ~20 ms of evaluation
        t = time.perf_counter()
        for _ in range(n):
            evaluate()
        if time.perf_counter() - t > 0.02:
            break
        n *= 2
    samples: list[list[float]] = [[], [], []]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples[0]) < 5:
        for i, one in enumerate(fns):
            t = time.perf_counter()
            for _ in range(n):
                one()
            samples[i].append((time.perf_counter() - t) / n * 1e6)
    evaluated, called, api_called = (statistics.median(s) for s in samples)
    return evaluated, called, api_called


# regorus ---------------------------------------------------------------------


def regorus_policy(policy_set: PolicySet) -> RegorusPolicy:
    """The set loaded into regorus as interlock.policy.regorus_engine loads the server's."""
    return RegorusEngine(1).compile_sync(policy_set)


def regorus_bench(
    policy: RegorusPolicy, entrypoint: str, policy_input: Any, seconds: float
) -> tuple[float, float]:
    """(eval µs, call µs): medians over interleaved ~20 ms batches.

    eval: eval_rule with the input already set (the evaluation alone, as
    `opa bench` times it). call: the server's path, RegorusPolicy.query_sync.
    """
    engine = policy._mine()
    rule = "data." + entrypoint.replace("/", ".")
    engine.set_input_json(json.dumps(policy_input))

    def evaluate() -> None:
        engine.eval_rule(rule)

    def call() -> None:
        policy.query_sync(entrypoint, policy_input)

    return _interleaved((evaluate, call), seconds)


def _interleaved(fns: tuple[Any, ...], seconds: float) -> tuple[float, ...]:
    """Median µs per call of each function, over alternating ~20 ms batches."""
    for one in fns:  # warm-up
        for _ in range(20):
            one()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fns[0]()
        if time.perf_counter() - t > 0.02:
            break
        n *= 2
    samples: list[list[float]] = [[] for _ in fns]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples[0]) < 5:
        for i, one in enumerate(fns):
            t = time.perf_counter()
            for _ in range(n):
                one()
            samples[i].append((time.perf_counter() - t) / n * 1e6)
    return tuple(statistics.median(s) for s in samples)


def contended(policy_dir: Path, calls: int) -> dict[str, tuple[float, float, float]]:
    """decision.main (dry-run) per call while another thread runs Python.

    The server evaluates on a worker thread while its event loop runs Python:
    a call path that gives up the GIL often waits for it often (each wait can
    last up to the interpreter's switch interval, 5 ms by default). One thread
    spins in Python; another makes `calls` decisions through each path, in
    alternating rounds of 50. Returns {path: (p50 µs, p99 µs, max µs)}.
    """
    policy_set = PolicySet.from_dir(policy_dir)
    policy_input = build_inputs(policy_set)["dry-run"]
    bundle = embedded_bundle(policy_set, [CASES[0].entrypoint])
    paths: dict[str, EmbeddedPolicy | RegorusPolicy] = {
        "C API (embedded_native)": EmbeddedPolicy(EmbeddedEngine(1, native=True), "bench", bundle),
        "regopy API (before)": EmbeddedPolicy(EmbeddedEngine(1, native=False), "bench", bundle),
    }
    if not REGORUS_MISSING:
        paths["regorus"] = regorus_policy(policy_set)
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for _ in range(1000):
                x += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        for _ in range(max(1, calls // 50)):
            for name, policy in paths.items():
                out = latencies[name]

                def batch(
                    policy: EmbeddedPolicy | RegorusPolicy = policy, out: list[float] = out
                ) -> None:
                    for _ in range(50):
                        t = time.perf_counter()
                        policy.query_sync(CASES[0].entrypoint, policy_input)
                        out.append((time.perf_counter() - t) * 1e6)

                worker = threading.Thread(target=batch)
                worker.start()
                worker.join()
    finally:
        stop.set()
        spinner.join()
    result = {}
    for name, lat in latencies.items():
        lat.sort()
        result[name] = (statistics.median(lat), lat[int(len(lat) * 0.99)], lat[-1])
    return result


# The run -------------------------------------------------------------------


@dataclass
class Row:
    case: str
    input: str
    opa_us: list[float | None] = field(default_factory=list)
    embedded_us: list[float | None] = field(default_factory=list)
    call_us: list[float | None] = field(default_factory=list)
    api_call_us: list[float | None] = field(default_factory=list)
    regorus_us: list[float | None] = field(default_factory=list)
    regorus_call_us: list[float | None] = field(default_factory=list)


def check(case: Case, answer: Any, engine: str, label: str) -> None:
    if answer is None:
        raise BenchError(f"{label}: {engine} gives no value for {case.query} ({case.input_name})")
    if case.expect is not None:
        got = {k: answer.get(k) for k in case.expect} if isinstance(answer, dict) else answer
        if got != case.expect:
            raise BenchError(
                f"{label}: {engine} {case.query} ({case.input_name}) gives {got}, "
                f"expected {case.expect}"
            )


def run(args: argparse.Namespace) -> list[Row]:
    dirs = [Path(d) for d in args.policy_dir] or [REPO / "policies"]
    labels = ["before", "after"] if len(dirs) == 2 else [str(d) for d in dirs]
    engines = set(args.engines.split(","))
    if "regorus" in engines and REGORUS_MISSING:
        print(f"regorus left out: {REGORUS_MISSING} (make install builds it)", file=sys.stderr)
        engines.discard("regorus")
    opa = find_opa() if "opa" in engines else ""
    cases = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    rows = [Row(c.name, c.input_name) for c in cases]
    entrypoints = sorted({c.entrypoint for c in cases})
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        prepared = []
        for i, directory in enumerate(dirs):
            policy_set = PolicySet.from_dir(directory)
            inputs = build_inputs(policy_set)
            bundle_dir = Path(tmp) / f"bundle{i}"
            write_bundle(policy_set, bundle_dir)
            input_files = {}
            for name, doc in inputs.items():
                input_files[name] = Path(tmp) / f"input{i}-{name}.json"
                input_files[name].write_text(json.dumps(doc))
            bundle = embedded_bundle(policy_set, entrypoints) if "embedded" in engines else None
            rgs = regorus_policy(policy_set) if "regorus" in engines else None
            prepared.append((inputs, bundle_dir, input_files, bundle, rgs))
        # Case by case, before then after: load that drifts during the run
        # touches both folders' figures alike.
        for case, row in zip(cases, rows, strict=True):
            for label, (inputs, bundle_dir, input_files, bundle, rgs) in zip(
                labels, prepared, strict=True
            ):
                policy_input = inputs[case.input_name]
                input_file = input_files[case.input_name]
                print(f"  {label}: {case.name} ({case.input_name})", file=sys.stderr, flush=True)
                opa_answer = None
                if opa:
                    opa_answer = opa_eval(opa, bundle_dir, input_file, case.query)
                    check(case, opa_answer, "opa", label)
                    row.opa_us.append(
                        opa_bench(opa, bundle_dir, input_file, case.query, args.count)
                    )
                else:
                    row.opa_us.append(None)
                if bundle is not None:
                    answer = embedded_answer(bundle, case.entrypoint, policy_input)
                    check(case, answer, "embedded", label)
                    if opa and answer != opa_answer:
                        raise BenchError(
                            f"{label}: the engines disagree on {case.query} ({case.input_name})"
                        )
                    evaluated, called, api_called = embedded_bench(
                        bundle, case.entrypoint, policy_input, args.seconds
                    )
                    row.embedded_us.append(evaluated)
                    row.call_us.append(called)
                    row.api_call_us.append(api_called)
                else:
                    row.embedded_us.append(None)
                    row.call_us.append(None)
                    row.api_call_us.append(None)
                if rgs is not None:
                    answer = rgs.query_sync(case.entrypoint, policy_input)
                    check(case, answer, "regorus", label)
                    if opa and answer != opa_answer:
                        raise BenchError(
                            f"{label}: regorus and OPA disagree on {case.query} "
                            f"({case.input_name}): {answer} vs {opa_answer}"
                        )
                    evaluated, called = regorus_bench(
                        rgs, case.entrypoint, policy_input, args.seconds
                    )
                    row.regorus_us.append(evaluated)
                    row.regorus_call_us.append(called)
                else:
                    row.regorus_us.append(None)
                    row.regorus_call_us.append(None)
    return rows


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def table(rows: list[Row], labels: list[str]) -> str:
    two = len(labels) == 2
    head = ["case", "input"]
    for label in labels:
        suffix = f" {label}" if len(labels) > 1 else ""
        head += [
            f"opa µs{suffix}",
            f"emb µs{suffix}",
            f"emb/opa{suffix}",
            f"call µs{suffix}",
            f"api µs{suffix}",
            f"rgs µs{suffix}",
            f"rgs/opa{suffix}",
            f"rgs call µs{suffix}",
        ]
    if two:
        head += ["opa after/before", "emb after/before", "rgs after/before"]
    lines = [head]
    for r in rows:
        line = [r.case, r.input]
        for i in range(len(labels)):
            line += [
                fmt(r.opa_us[i]),
                fmt(r.embedded_us[i]),
                ratio(r.embedded_us[i], r.opa_us[i]),
                fmt(r.call_us[i]),
                fmt(r.api_call_us[i]),
                fmt(r.regorus_us[i]),
                ratio(r.regorus_us[i], r.opa_us[i]),
                fmt(r.regorus_call_us[i]),
            ]
        if two:
            line += [
                ratio(r.opa_us[1], r.opa_us[0]),
                ratio(r.embedded_us[1], r.embedded_us[0]),
                ratio(r.regorus_us[1], r.regorus_us[0]),
            ]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells))
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, "
        f"regopy {regopy.__version__}, regorus {_regorus_version()}, load average {load:.2f}"
    )


def _regorus_version() -> str:
    if REGORUS_MISSING:
        return "-"
    import interlock_regorus

    return str(interlock_regorus.REGORUS_VERSION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy-dir",
        action="append",
        default=[],
        help="a policy bundle folder (default policies/); give two for before/after",
    )
    parser.add_argument(
        "--engines", default="opa,embedded,regorus", help="some of opa, embedded, regorus"
    )
    parser.add_argument(
        "--cases", default="", help="only these cases, e.g. decision.main,authz.main"
    )
    parser.add_argument("--count", type=int, default=3, help="`opa bench --count` (median taken)")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="embedded, regorus: seconds per case"
    )
    parser.add_argument(
        "--contended-calls",
        type=int,
        default=400,
        help="decisions per call path beside a busy Python thread (0: skip)",
    )
    parser.add_argument("--opa-bin", default="", help="the OPA binary (default: the pinned one)")
    parser.add_argument("--json", default="", help="write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if len(args.policy_dir) > 2:
        parser.error("give at most two --policy-dir (before, after)")
    if args.opa_bin:
        os.environ["INTERLOCK_OPA_BIN"] = args.opa_bin
    labels = (
        ["before", "after"]
        if len(args.policy_dir) == 2
        else [args.policy_dir[0] if args.policy_dir else "policies"]
    )
    opa_version = ""
    if "opa" in args.engines.split(","):
        try:
            out = subprocess.run(
                [find_opa(), "version"], capture_output=True, text=True, timeout=10
            ).stdout
            opa_version = out.splitlines()[0] if out else ""
        except (BenchError, OSError) as exc:
            print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
            return 1
    print(f"# {machine()}; OPA {opa_version.removeprefix('Version: ') or '-'}")
    if len(labels) == 2:
        print(f"# before: {args.policy_dir[0]}   after: {args.policy_dir[1]}")
    try:
        rows = run(args)
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    print(table(rows, labels))
    if "embedded" in args.engines.split(",") and args.contended_calls > 0:
        directory = Path(args.policy_dir[-1]) if args.policy_dir else REPO / "policies"
        print(
            f"\ndecision.main (dry-run), {args.contended_calls} calls per path on a worker "
            "thread while another thread runs Python (the server's event loop under load):"
        )
        for name, (p50, p99, top) in contended(directory, args.contended_calls).items():
            print(f"  {name:22} p50 {p50:8.0f} µs  p99 {p99:8.0f} µs  max {top:8.0f} µs")
    last = len(labels) - 1
    for r in rows:
        if r.case == "decision.main" and r.input == "dry-run":
            opa_us, emb_us, rgs_us = r.opa_us[last], r.embedded_us[last], r.regorus_us[last]
            if opa_us is not None:
                met = "met" if opa_us <= 50 else "NOT MET"
                print(
                    f"decision.main (dry-run): opa median {opa_us:.1f} µs (goal <= 50 µs) -> {met}"
                )
            if opa_us is not None and emb_us is not None:
                met = "met" if emb_us <= 1.5 * opa_us else "NOT MET"
                print(
                    f"decision.main (dry-run): embedded {emb_us / opa_us:.2f}x OPA "
                    f"(goal <= 1.5x) -> {met}"
                )
            if opa_us is not None and rgs_us is not None:
                met = "met" if rgs_us <= 1.5 * opa_us else "NOT MET"
                print(
                    f"decision.main (dry-run): regorus {rgs_us / opa_us:.2f}x OPA "
                    f"(goal <= 1.5x) -> {met}"
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"labels": labels, "rows": [asdict(r) for r in rows]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
