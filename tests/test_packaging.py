"""The packages a user installs: the server wheel, the client wheel, the examples.

The ``packaging`` tests build both wheels (``pip wheel --no-deps``), install them
into fresh virtual environments (dependencies pinned by constraints.txt, from
pip's cache or PyPI) and run them outside the checkout: the server with no flags
serves the policy bundle its wheel ships, and the client installed alone calls a
live server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CATALOG
from tests.helpers.process import clean_env, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "clients" / "python" / "examples"


def test_no_example_shadows_a_standard_library_module() -> None:
    # `python examples/x.py` puts examples/ first on sys.path: a file named like a
    # standard module (operator.py did) replaces it for everything run from there.
    names = {path.stem for path in EXAMPLES.glob("*.py")}
    assert names, EXAMPLES
    assert names & sys.stdlib_module_names == set()


# The built wheels, installed into fresh virtual environments -----------------------

CONSTRAINTS = ROOT / "constraints.txt"
# What a wheel build reads from the checkout (copied, so the build leaves no
# build/ or egg-info behind in the working tree).
SERVER_SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "server", "policies")
INSTALL_SECONDS = 240

# Run inside a fresh venv: the installed client against a server at argv[1],
# waiting for it to come up. Prints what a user would look at, as JSON.
CLIENT_SCRIPT = """
import json, sys, time
from interlock_client import InterlockError, SyncInterlockClient
from interlock_client.v1 import types_pb2

with SyncInterlockClient(sys.argv[1], timeout=5, retries=0) as client:
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get_health()
            break
        except InterlockError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    decision = client.request_tool_call("agent1", "vision_inspect", {"target": "x"}, 0.9)
    status = client.policy_status()
    print(json.dumps({
        "verdict": types_pb2.Verdict.Name(decision.verdict),
        "mode": types_pb2.ExecutionMode.Name(decision.mode),
        "tools": sorted(t.name for t in client.list_tools().tools),
        "policy_source": status.source,
        "revision": status.revision,
        "server_package_importable": "interlock" in sys.modules,
    }))
"""


def run(argv: list[str], cwd: Path, timeout: float = INSTALL_SECONDS) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built from a copy of the checkout's sources (pip wheel --no-deps)."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SERVER_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    shutil.copytree(ROOT / "clients" / "python", work / "client", ignore=ignore)
    dist = work / "dist"
    for project in (src, work / "client"):
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                str(dist),
                str(project),
            ],
            work,
        )
    built = {p.name.split("-")[0]: p for p in dist.glob("*.whl")}
    assert set(built) == {"interlock", "interlock_client"}, built
    return built


def fresh_venv(where: Path, *wheel_files: Path) -> Path:
    """A new virtual environment holding ``wheel_files`` and their dependencies
    (at the versions constraints.txt pins; from pip's cache, else PyPI)."""
    run([sys.executable, "-m", "venv", str(where)], where.parent)
    python = where / "bin" / "python"
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(CONSTRAINTS),
            *map(str, wheel_files),
        ],
        where.parent,
    )
    return python


@pytest.mark.packaging
def test_installed_server_serves_its_shipped_policies_outside_the_checkout(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    python = fresh_venv(tmp_path / "venv", wheels["interlock"], wheels["interlock_client"])
    elsewhere = tmp_path / "elsewhere"  # no policies/ here, nor above it
    elsewhere.mkdir()
    address = f"127.0.0.1:{free_port()}"
    env = clean_env() | {"INTERLOCK_LISTEN": address, "INTERLOCK_METRICS_LISTEN": ""}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        # `interlock serve` with no flags (the address comes from the environment).
        server = subprocess.Popen(
            [str(python.parent / "interlock"), "serve"],
            cwd=elsewhere,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        out = subprocess.run(
            [str(python), "-c", CLIENT_SCRIPT, address],
            cwd=elsewhere,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert server.poll() is None, f"interlock serve exited:\n{log_path.read_text()}"
        assert out.returncode == 0, out.stderr + "\n" + log_path.read_text()
    finally:
        server.terminate()
        code = server.wait(30)
    seen = json.loads(out.stdout)
    assert seen["verdict"] == "VERDICT_ALLOW" and seen["mode"] == "EXECUTION_MODE_LIVE"
    assert set(seen["tools"]) == CATALOG
    source = Path(seen["policy_source"])
    assert source.parts[-2:] == ("interlock", "policies"), source
    assert source.is_relative_to(tmp_path / "venv"), source
    assert not list(source.rglob("*_test.rego")), "Rego tests shipped in the wheel"
    assert code == 0, log_path.read_text()
    assert (elsewhere / "var" / "interlock" / "interlock.db").exists()


@pytest.mark.packaging
async def test_client_package_alone_calls_a_live_server(
    wheels: dict[str, Path], tmp_path: Path, target: str
) -> None:
    python = await asyncio.to_thread(fresh_venv, tmp_path / "venv", wheels["interlock_client"])
    probe = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        "import importlib.util; print(importlib.util.find_spec('interlock'))",
        cwd=tmp_path,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert (await probe.communicate())[0].decode().strip() == "None"  # no server package
    proc = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        CLIENT_SCRIPT,
        target,
        cwd=tmp_path,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    seen = json.loads(stdout)
    assert seen["verdict"] == "VERDICT_ALLOW" and seen["mode"] == "EXECUTION_MODE_LIVE"
    assert set(seen["tools"]) == CATALOG
    assert seen["server_package_importable"] is False
