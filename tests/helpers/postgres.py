"""A throwaway PostgreSQL cluster on a free loopback port, for the tests.

Debian's server binaries (``apt-get install postgresql``; ``make postgres``)
run ``initdb`` on a temporary directory and ``pg_ctl`` start and stop it. The
server refuses to run as root, so as root the cluster belongs to the
``postgres`` user and its commands run through ``runuser``. Authentication is
``trust`` on loopback only: the cluster lives as long as the test.
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
    """``initdb`` + ``pg_ctl`` in a fresh directory; ``url(db)`` connects over
    loopback TCP. The directory is not under the test's tmp_path: the
    ``postgres`` user must be able to reach it (pytest's folders are private)."""

    def __init__(self, port: int | None = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries: run `make postgres` (apt-get)")
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="interlock-pg-"))
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

    def create_database(self, name: str) -> str:
        argv = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        argv += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"']
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        """Stop the cluster and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        path = self.base / "log"
        return path.read_text(errors="replace") if path.exists() else ""
