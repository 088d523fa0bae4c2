"""A throwaway PostgreSQL cluster on a loopback port, for tests, the benchmark
and ``make run-replicas``.

Debian's server binaries (``apt-get install postgresql``; ``make postgres``)
run ``initdb`` on a directory (a fresh temporary one unless given) and
``pg_ctl`` start and stop it. The server refuses to run as root, so as root
the cluster belongs to the ``postgres`` user and its commands run through
``runuser``. Authentication is ``trust`` on loopback only, and ``fsync`` is
off: this is a development cluster, never one to keep data in.

It lives in the server package (not under tests/) so that the tests
(``tests/helpers/postgres.py``), ``bench/`` and ``python -m
interlock.devtools.replicas`` import one copy without path tricks; it needs
nothing but the standard library.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: $INTERLOCK_PG_BINDIR, Debian's folder, or PATH."""
    candidates = [os.environ.get("INTERLOCK_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """``initdb`` + ``pg_ctl`` in ``base`` (a fresh temporary directory when not
    given); ``url(db)`` connects over loopback TCP. The directory must be
    reachable by the ``postgres`` user when running as root (pytest's tmp_path
    is private: tests leave ``base`` to the default)."""

    def __init__(self, port: int | None = None, base: Path | None = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries: run `make postgres` (apt-get)")
        self.bindir = bindir
        if base is None:
            self.base = Path(tempfile.mkdtemp(prefix="interlock-pg-"))
        else:
            self.base = base.resolve()
            self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        self.data = self.base / "pgdata"
        self.sockets = self.base / "pgsock"
        self.port = port or free_port()
        self._as_user = os.geteuid() == 0

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._as_user:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-instructions",
        )

    def start(self) -> None:
        if not self.data.exists():
            self.init()
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
            " -c max_connections=200 -c fsync=off -c synchronous_commit=on"
            " -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.base / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster (and so the cluster's backends): a crash."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def running(self) -> bool:
        """Whether the cluster's postmaster answers ``pg_ctl status``."""
        if not self.data.exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid, from ``postmaster.pid``, while the cluster runs."""
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def create_database(self, name: str) -> str:
        argv = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        argv += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"']
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
        return self.url(name)

    def ensure_database(self, name: str) -> str:
        """The URL of database ``name``, created first when the cluster lacks it."""
        argv = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        argv += ["-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"]
        found = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
        return self.url(name) if found.stdout.strip() == "1" else self.create_database(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        """Stop the cluster and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        path = self.base / "log"
        return path.read_text(errors="replace") if path.exists() else ""


__all__ = ["PostgresCluster", "free_port", "pg_bindir"]
