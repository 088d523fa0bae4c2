"""The torture suite: real processes, real faults, counted figures.

Each scenario records its figures into one collector (tests/torture/figures.py);
this conftest hands it to the tests as the ``figures`` fixture, notes how each
scenario test ended, and at the end of the session prints the table (it shows
in ``make test`` output, ``-q`` included) and writes ``.torture/figures.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.process import ServerProcess
from tests.torture.figures import FIGURES, Figures, Outcome


@pytest.fixture
def figures() -> Figures:
    return FIGURES


@pytest.fixture
async def serve(tmp_path: Path, policy_dir: Path) -> AsyncIterator[ServerProcess]:
    """``interlock serve`` as a subprocess on the test's own port, data and policy
    folders (a copy of the shipped policies); killed at the end."""
    server = ServerProcess(tmp_path / "data", policy_dir, tmp_path / "logs")
    try:
        yield server
    finally:
        await server.close()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note how each torture test ended (its call phase, or the phase that failed)."""
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        if hasattr(report, "wasxfail") and report.passed:
            outcome = "xpassed"
        name = report.nodeid.rsplit("::", 1)[-1]
        scenario = Path(report.nodeid.split("::", 1)[0]).stem.removeprefix("test_")
        FIGURES.outcomes.append(Outcome(scenario, name, outcome, round(report.duration, 1)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.outcomes:
        return
    path = FIGURES.write()
    terminalreporter.write_sep("=", "torture figures")
    terminalreporter.write_line(FIGURES.table())
    terminalreporter.write_line(f"(written to {path})")
