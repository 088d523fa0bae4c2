"""The torture suite's figures: what each scenario counted, in one place.

Every scenario records its counts into :data:`FIGURES` (through the
``figures`` fixture) *before* it asserts them, so a failing run still shows
what it saw. At the end of the session tests/torture/conftest.py prints them
as a table and writes them to ``.torture/figures.json`` at the repository root.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES_JSON = ROOT / ".torture" / "figures.json"


HEADLINE = (
    "SIGKILLs survived",
    "LIVE delivered twice",
    "events lost",
    "LIVE delivered against policy",
    "LIVE answers while the engine was down",
    "requests that stalled others",
    "lines lost under disk full",
    "access_denials.jsonl lines",
)
"""The figures issue 11 asks for, shown first (in this order)."""


@dataclass
class Figure:
    scenario: str
    name: str
    value: int | float | str
    must: str = ""
    """The guarantee the value is held to (``"= 0"``, ``"<= 3"``), empty when it is
    only reported."""


@dataclass
class Outcome:
    scenario: str
    test: str
    outcome: str
    seconds: float


@dataclass
class Figures:
    rows: list[Figure] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, scenario: str, name: str, value: int | float | str, must: str = "") -> None:
        """Record (or replace) one figure of ``scenario``."""
        self.rows = [r for r in self.rows if (r.scenario, r.name) != (scenario, name)]
        self.rows.append(Figure(scenario, name, value, must))

    def add(self, scenario: str, name: str, amount: int, must: str = "") -> None:
        """Add ``amount`` to a counting figure (0 when not recorded yet)."""
        now = next((r for r in self.rows if (r.scenario, r.name) == (scenario, name)), None)
        before = now.value if now is not None and isinstance(now.value, int) else 0
        self.record(scenario, name, before + amount, must)

    def ordered(self) -> list[Figure]:
        """The headline figures first, then the others in the order recorded."""

        def rank(row: Figure) -> int:
            return HEADLINE.index(row.name) if row.name in HEADLINE else len(HEADLINE)

        return sorted(self.rows, key=rank)

    def seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)

    def table(self) -> str:
        def show(value: int | float | str) -> str:
            return f"{value:.3g}" if isinstance(value, float) else str(value)

        head = ("scenario", "figure", "value", "must be")
        rows = [head, *((r.scenario, r.name, show(r.value), r.must) for r in self.ordered())]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        tests = ", ".join(f"{o.test} {o.outcome} ({o.seconds:.1f}s)" for o in self.outcomes)
        lines.append("")
        lines.append(f"{len(self.outcomes)} scenario test(s) in {self.seconds():.1f}s: {tests}")
        return "\n".join(line.rstrip() for line in lines)

    def write(self, path: Path = FIGURES_JSON) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "seconds": round(self.seconds(), 1),
            "headline": {r.name: r.value for r in self.ordered() if r.name in HEADLINE},
            "figures": [asdict(r) for r in self.ordered()],
            "tests": [asdict(o) for o in self.outcomes],
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path


FIGURES = Figures()
"""The session's figures (one pytest session, one collector)."""


__all__ = ["FIGURES", "FIGURES_JSON", "HEADLINE", "Figure", "Figures"]
