"""Start and stop a real OPA server on a free loopback port.

The OPA is configured as docs/policies.md says: its bundle service is the
Interlock server's bundle server (``opa_bundle_listen``, a port chosen here
so OPA can be started first), long-polled, and its decision logs go back to
that server. :func:`opa_server_options` gives start_server what it needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_BY_URL: dict[str, OpaProcess] = {}


def opa_binary() -> str:
    candidates = [
        os.environ.get("INTERLOCK_OPA_BIN", ""),
        str(ROOT / ".tools/bin/opa"),
        shutil.which("opa") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise RuntimeError("no opa binary: run `make opa` (go install) or set INTERLOCK_OPA_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def opa_config(bundle_port: int, *, long_polling: bool = True, max_delay: int = 1) -> str:
    """OPA's configuration for an Interlock bundle server on 127.0.0.1:bundle_port."""
    polling = f"      min_delay_seconds: 1\n      max_delay_seconds: {max_delay}\n"
    if long_polling:
        polling += "      long_polling_timeout_seconds: 30\n"
    return (
        "services:\n"
        "  interlock:\n"
        f"    url: http://127.0.0.1:{bundle_port}\n"
        "bundles:\n"
        "  interlock:\n"
        "    service: interlock\n"
        "    resource: bundles/interlock.tar.gz\n"
        "    polling:\n"
        f"{polling}"
        "decision_logs:\n"
        "  service: interlock\n"
        "  resource: logs\n"
        "  reporting:\n"
        "    min_delay_seconds: 1\n"
        "    max_delay_seconds: 1\n"
    )


class OpaProcess:
    """`opa run --server` on 127.0.0.1:<port>, fed bundles by the Interlock
    server listening on 127.0.0.1:<bundle_port>; restartable on the same ports."""

    def __init__(
        self, port: int | None = None, *, long_polling: bool = True, max_delay: int = 1
    ) -> None:
        self.port = port or free_port()
        self.bundle_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="interlock-test-opa-"))
        self.config_file = self._dir / "opa.yaml"
        self.config_file.write_text(
            opa_config(self.bundle_port, long_polling=long_polling, max_delay=max_delay)
        )
        _BY_URL[self.url] = self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bundle_listen(self) -> str:
        return f"127.0.0.1:{self.bundle_port}"

    def _bundle_server_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.bundle_port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 15.0) -> None:
        """Start OPA; when the Interlock server already serves its bundle, wait
        until OPA has loaded it too."""
        self.proc = subprocess.Popen(
            [
                opa_binary(),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--config-file",
                str(self.config_file),
                "--log-level",
                "error",
                "--disable-telemetry",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        health = f"{self.url}/health?bundles" if self._bundle_server_up() else f"{self.url}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"opa exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(health, timeout=0.5) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.05)
        raise RuntimeError("opa did not become healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def opa_server_options(url: str) -> dict[str, Any]:
    """Server config overrides for the OPA at url: its bundle server's
    address (when this helper started it) and the OPA binary."""
    options: dict[str, Any] = {"opa_bin": opa_binary()}
    proc = _BY_URL.get(url)
    if proc is not None:
        options["opa_bundle_listen"] = proc.bundle_listen
    return options
