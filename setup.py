"""setuptools hook: the server wheel ships the default policy bundle.

``policies/`` (at the top of the checkout, where ``opa test`` and the docs find
it) is copied into the wheel as ``interlock/policies``, Rego tests left out,
so ``interlock serve`` on an installed wheel has a bundle to serve without a
checkout (``ServerConfig.policy_dir`` falls back to it). Everything else is in
pyproject.toml. The sdist carries ``policies/`` (MANIFEST.in), so a wheel built
from it ships the same bundle.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE = Path(__file__).resolve().parent / "policies"


class BuildPyWithPolicies(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install serves ./policies from the checkout
        target = Path(self.build_lib) / "interlock" / "policies"
        if target.exists():
            shutil.rmtree(target)
        files = [p for p in BUNDLE.rglob("*") if p.is_file() and not p.name.endswith("_test.rego")]
        if not files:
            raise RuntimeError(f"no policy bundle at {BUNDLE}")
        for path in files:
            dest = target / path.relative_to(BUNDLE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildPyWithPolicies})
