"""OPA's own conformance cases through the in-process engines: the share each passes.

    .venv/bin/python bench/conformance.py                 # regorus and regopy
    .venv/bin/python bench/conformance.py --engines regorus --failures 20

The cases are the YAML test cases OPA ships in its Go module
(``v1/test/cases/testdata/v1``: Rego v1, what Interlock's policies are
written in), read from the Go module cache at the pinned OPA version
(``make opa`` put it there; otherwise ``go mod download`` fetches it). Each
case gives modules, data, an input and a query, and wants a result set or an
error; OPA's test runner (topdown/exported_test.go) is followed:

- ``want_result``: the query's binding rows, compared as a set of objects
  (``sort_bindings``: each binding's array sorted first;
  ``ignore_generated_vars``: ``__localq`` bindings left out);
- ``want_error`` / ``want_error_code``: the engine must fail. Any error
  counts: the engines word their errors their own way, so an error case is
  a lenient check (the report gives results and errors apart);
- ``strict_error``: the case runs with strict builtin errors.

An engine runs in a child process, so a case that aborts or hangs it (regopy
aborts on some) is counted as failed and the run goes on with the next case.
The engines run as Interlock runs them: regorus through interlock_regorus
(with its OPA-faithful sprintf), regopy through regopy.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CASE_SECONDS = 20.0
"""A case that takes longer is stopped and counted as failed (timeout)."""


class ConformanceError(Exception):
    pass


# The cases ---------------------------------------------------------------------


def opa_version() -> str:
    """The OPA version the Makefile pins (OPA_VERSION)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("OPA_VERSION :="):
            return line.split(":=", 1)[1].strip()
    raise ConformanceError("no OPA_VERSION in the Makefile")


def cases_dir(version: str) -> Path:
    """v1/test/cases/testdata/v1 of OPA's Go module at version, downloading it if needed."""
    module = f"github.com/open-policy-agent/opa@{version}"
    try:
        cache = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConformanceError(f"go is needed to find OPA's cases: {exc}") from None
    root = Path(cache) / module
    if not root.is_dir():
        proc = subprocess.run(
            ["go", "mod", "download", "-json", module], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ConformanceError(f"go mod download {module} failed: {proc.stdout}{proc.stderr}")
        root = Path(json.loads(proc.stdout)["Dir"])
    found = root / "v1" / "test" / "cases" / "testdata" / "v1"
    if not found.is_dir():
        raise ConformanceError(f"no conformance cases at {found}")
    return found


def load_cases(directory: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted(directory.rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for case in doc.get("cases") or []:
            case["folder"] = path.relative_to(directory).parts[0]
            cases.append(case)
    return cases


# Judging -------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    """Numbers compare by value (1 == 1.0); keys in order."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return str(value)


def _key(value: Any) -> str:
    return json.dumps(_canon(value), sort_keys=True, default=str)


def row_set(rows: list[dict[str, Any]], case: dict[str, Any]) -> set[str]:
    out = set()
    for row in rows:
        obj = {}
        for name, value in row.items():
            if case.get("ignore_generated_vars") and name.startswith("__localq"):
                continue
            if case.get("sort_bindings") and isinstance(value, list):
                value = sorted(value, key=_key)
            obj[name] = value
        out.add(_key(obj))
    return out


def wants_error(case: dict[str, Any]) -> bool:
    return "want_error" in case or "want_error_code" in case


def judge(case: dict[str, Any], rows: list[dict[str, Any]] | None, error: str) -> tuple[str, str]:
    """("pass" | "fail", why) for one case."""
    if wants_error(case):
        return ("pass", "") if rows is None else ("fail", "no error, but one was wanted")
    if rows is None:
        return "fail", f"error: {error}"
    want = case.get("want_result")
    if want is None:
        return "fail", "the case wants neither a result nor an error"
    if row_set(rows, case) == row_set(want, case):
        return "pass", ""
    return "fail", f"result {json.dumps(rows, default=str)[:200]}"


# The engines (in the child) --------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def rows_regorus(case: dict[str, Any]) -> list[dict[str, Any]]:
    import interlock_regorus as rg

    engine = rg.Engine(strict_builtin_errors=bool(case.get("strict_error")))
    if case.get("data") is not None:
        engine.add_data_json(_json(case["data"]))
    if case.get("input_term") is not None:
        result = json.loads(engine.eval_query(case["input_term"])).get("result") or []
        if not result:
            raise ConformanceError("input_term is undefined")
        engine.set_input_json(_json(result[-1]["expressions"][-1]["value"]))
    elif "input" in case:
        engine.set_input_json(_json(case["input"]))
    for i, module in enumerate(case.get("modules") or []):
        engine.add_policy(f"mod{i}.rego", module)
    result = json.loads(engine.eval_query(case["query"])).get("result") or []
    return [r.get("bindings") or {} for r in result]


def rows_regopy(case: dict[str, Any]) -> list[dict[str, Any]]:
    import regopy

    interp = regopy.Interpreter()
    interp.strict_built_in_errors = bool(case.get("strict_error"))
    if case.get("data") is not None:
        interp.add_data_json(_json(case["data"]))
    for i, module in enumerate(case.get("modules") or []):
        interp.add_module(f"mod{i}.rego", module)
    if case.get("input_term") is not None:
        interp.set_input_term(case["input_term"])
    elif "input" in case:
        interp.set_input_term(_json(case["input"]))
    output = interp.query(case["query"])
    text = str(output).strip()
    if not output.ok():
        raise ConformanceError(text[:300])
    if text == "undefined" or not text:
        return []
    doc = json.loads(text)
    docs = doc if isinstance(doc, list) else [doc]
    return [d.get("bindings") or {} for d in docs if isinstance(d, dict)]


ENGINES = {"regorus": rows_regorus, "regopy": rows_regopy}


def child(engine: str, cases_file: str, start: int) -> None:
    """Run cases from start on; one line per case on the saved stdout."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the engines' own prints go to stderr
    sys.stdout = sys.stderr
    cases = json.loads(Path(cases_file).read_text())
    run = ENGINES[engine]
    for i in range(start, len(cases)):
        case = cases[i]
        try:
            rows: list[dict[str, Any]] | None = run(case)
            error = ""
        except Exception as exc:
            rows, error = None, " ".join(str(exc).split())[:200] or type(exc).__name__
        verdict, why = judge(case, rows, error)
        out.write(json.dumps([i, verdict, why]) + "\n")


# The run (parent) -------------------------------------------------------------------


def run_engine(engine: str, cases_file: Path, total: int) -> list[tuple[str, str]]:
    """(verdict, why) per case; a child that dies or hangs fails that case."""
    results: list[tuple[str, str] | None] = [None] * total
    start = 0
    while start < total:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", engine, str(cases_file), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        nxt = start
        while nxt < total:
            ready, _, _ = select.select([proc.stdout], [], [], CASE_SECONDS)
            if not ready:
                proc.kill()
                results[nxt] = ("fail", f"no answer within {CASE_SECONDS:g}s")
                nxt += 1
                break
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                results[nxt] = ("fail", f"the engine's process died (exit {proc.returncode})")
                nxt += 1
                break
            i, verdict, why = json.loads(line)
            results[i] = (verdict, why)
            nxt = i + 1
        proc.kill()
        proc.wait()
        proc.stdout.close()
        start = nxt
    return [r or ("fail", "not run") for r in results]


def report(
    engine: str, cases: list[dict[str, Any]], results: list[tuple[str, str]], failures: int
) -> dict[str, Any]:
    passed = sum(1 for v, _ in results if v == "pass")
    by_kind = collections.Counter(
        ("error" if wants_error(c) else "result", v)
        for c, (v, _) in zip(cases, results, strict=True)
    )
    folders = collections.Counter(
        c["folder"] for c, (v, _) in zip(cases, results, strict=True) if v != "pass"
    )
    result_cases = by_kind[("result", "pass")] + by_kind[("result", "fail")]
    error_cases = by_kind[("error", "pass")] + by_kind[("error", "fail")]
    print(
        f"{engine:8} {passed}/{len(cases)} passed ({100 * passed / len(cases):.1f}%): "
        f"results {by_kind[('result', 'pass')]}/{result_cases}, "
        f"errors {by_kind[('error', 'pass')]}/{error_cases}"
    )
    if failures:
        print(
            f"  folders with most failures: {', '.join(f'{f} {n}' for f, n in folders.most_common(12))}"
        )
        shown = 0
        for case, (verdict, why) in zip(cases, results, strict=True):
            if verdict != "pass" and shown < failures:
                print(f"  FAIL {case.get('note')}: {why}")
                shown += 1
    return {
        "engine": engine,
        "cases": len(cases),
        "passed": passed,
        "share": passed / len(cases),
        "results": [by_kind[("result", "pass")], result_cases],
        "errors": [by_kind[("error", "pass")], error_cases],
        "failed_by_folder": dict(folders.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="regorus,regopy", help="some of regorus, regopy")
    parser.add_argument("--cases", default="", help="a folder of OPA's YAML cases (default: found)")
    parser.add_argument("--opa-version", default="", help="default: the Makefile's OPA_VERSION")
    parser.add_argument("--failures", type=int, default=0, help="list this many failed cases")
    parser.add_argument("--json", default="", help="write the figures as JSON to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    try:
        version = args.opa_version or opa_version()
        directory = Path(args.cases) if args.cases else cases_dir(version)
    except ConformanceError as exc:
        print(f"CONFORMANCE FAILED: {exc}", file=sys.stderr)
        return 1
    cases = load_cases(directory)
    if not cases:
        print(f"CONFORMANCE FAILED: no cases under {directory}", file=sys.stderr)
        return 1
    print(f"# OPA {version} conformance cases (Rego v1): {len(cases)} cases from {directory}")
    figures = []
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps(cases, default=str))
        for engine in args.engines.split(","):
            if engine not in ENGINES:
                parser.error(f"unknown engine {engine!r}")
            started = time.perf_counter()
            results = run_engine(engine, cases_file, len(cases))
            figure = report(engine, cases, results, args.failures)
            figure["seconds"] = round(time.perf_counter() - started, 1)
            figures.append(figure)
    if args.json:
        Path(args.json).write_text(json.dumps({"opa": version, "engines": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
