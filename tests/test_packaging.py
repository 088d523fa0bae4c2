"""The packages a user installs: the server wheel, the client wheel, the examples.

The ``packaging`` tests build both wheels (``pip wheel --no-deps``), install them
into fresh virtual environments (dependencies pinned by constraints.txt, from
pip's cache or PyPI) and run them outside the checkout: the server with no flags
serves the policy bundle its wheel ships, and the client installed alone calls a
live server.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "clients" / "python" / "examples"


def test_no_example_shadows_a_standard_library_module() -> None:
    # `python examples/x.py` puts examples/ first on sys.path: a file named like a
    # standard module (operator.py did) replaces it for everything run from there.
    names = {path.stem for path in EXAMPLES.glob("*.py")}
    assert names, EXAMPLES
    assert names & sys.stdlib_module_names == set()
