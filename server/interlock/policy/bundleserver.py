"""The bundle server OPA is fed from (``engine: opa``).

Interlock serves the active policy set as an OPA bundle on loopback, and the
OPA it queries is configured to poll it (docs/policies.md shows the OPA
configuration):

- ``GET /bundles/interlock.tar.gz``: the bundle, a gzipped tarball of the
  set's ``.rego`` modules, one ``data.json`` (the merged data document) and a
  ``.manifest`` naming the set's ``revision`` and ``roots: ["interlock"]``.
  The ETag is the revision; a request whose ``If-None-Match`` names it gets
  ``304 Not Modified``. OPA's bundle plugin asks to long-poll with
  ``Prefer: wait=N`` (``long_polling_timeout_seconds`` in its configuration):
  such a request for the revision it already has is held until a new one is
  published or N seconds pass (then 304), so a reload reaches OPA at once
  rather than at its next poll. Responses carry the content type
  ``application/vnd.openpolicyagent.bundles``, which tells OPA the server
  long-polls.
- ``POST /logs``: OPA's decision logs (a gzipped JSON array of events, each
  naming the bundle revision it was evaluated on), appended one event a line
  to ``opa_decisions.jsonl`` in the audit folder.

:meth:`BundleServer.hold` keeps OPA on the revision it has (the newest is
published but withheld) until :meth:`BundleServer.release`: for tests and
for drills of an OPA that lags behind.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import tarfile
import time
from pathlib import Path

from aiohttp import web

from interlock.errors import PolicyLoadError
from interlock.policy.bundle import PolicySet

log = logging.getLogger(__name__)

BUNDLE_NAME = "interlock"
"""The bundle's name in OPA's configuration, and the one root it owns."""
BUNDLE_PATH = "/bundles/interlock.tar.gz"
LOGS_PATH = "/logs"
CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
"""OPA's content type for a bundle server that supports long polling."""
MAX_WAIT_SECONDS = 300.0
DECISION_LOG_FILE = "opa_decisions.jsonl"
MAX_LOG_BYTES = 64 * 1024 * 1024
"""Largest decompressed decision-log upload accepted."""


def build_bundle(policy_set: PolicySet) -> bytes:
    """The set as an OPA bundle (tar.gz); the same set gives the same bytes."""
    manifest = {"revision": policy_set.revision, "roots": [BUNDLE_NAME]}
    files: dict[str, bytes] = {
        ".manifest": json.dumps(manifest, sort_keys=True).encode(),
        "data.json": json.dumps(policy_set.data, sort_keys=True).encode(),
    }
    for path, source in sorted(policy_set.modules.items()):
        files[path] = source.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo("/" + path)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def _wait_seconds(prefer: str) -> float:
    """The N of ``Prefer: wait=N`` (0 when absent or malformed); OPA sends
    ``modes=snapshot,delta;wait=N``."""
    for part in prefer.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value.strip()), MAX_WAIT_SECONDS))
            except ValueError:
                return 0.0
    return 0.0


class BundleServer:
    """Serves the published revision to OPA and takes OPA's decision logs."""

    def __init__(self, listen: str, audit_dir: str | Path) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"opa_bundle_listen must be host:port, not {listen!r}")
        self._host = host.strip("[]") or "127.0.0.1"
        self._port = int(port)
        self._log_file = Path(audit_dir) / DECISION_LOG_FILE
        self._latest: tuple[str, bytes] | None = None
        self._served: tuple[str, bytes] | None = None
        self._held = False
        self._closing = False
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._log_lock = asyncio.Lock()
        self.port = 0
        self.requests = 0
        """Bundle requests answered (200 or 304)."""

    @property
    def url(self) -> str:
        """The service URL to give OPA (``services.interlock.url``)."""
        return f"http://{self._host}:{self.port}"

    @property
    def revision(self) -> str:
        """The revision OPA is offered now ("" before the first publish)."""
        return self._served[0] if self._served else ""

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_LOG_BYTES)
        app.router.add_get(BUNDLE_PATH, self._bundle)
        app.router.add_post(LOGS_PATH, self._logs)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise PolicyLoadError(
                f"the OPA bundle server cannot listen on {self._host}:{self._port}: {exc}"
            ) from None
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port
        log.info("OPA bundle server on %s%s", self.url, BUNDLE_PATH)

    async def publish(self, policy_set: PolicySet) -> None:
        """Offer this set to OPA (unless held); long polls waiting are answered."""
        body = await asyncio.to_thread(build_bundle, policy_set)
        async with self._changed:
            self._latest = (policy_set.revision, body)
            if not self._held or self._served is None:
                self._served = self._latest
            self._changed.notify_all()

    async def hold(self) -> None:
        """Keep offering the current revision; newer ones wait for release()."""
        async with self._changed:
            self._held = True

    async def release(self) -> None:
        """Offer the newest published revision again."""
        async with self._changed:
            self._held = False
            if self._latest is not None and self._served != self._latest:
                self._served = self._latest
                self._changed.notify_all()

    async def _bundle(self, request: web.Request) -> web.StreamResponse:
        wait = _wait_seconds(request.headers.get("Prefer", ""))
        known = request.headers.get("If-None-Match", "").strip().strip('"')
        deadline = time.monotonic() + wait
        async with self._changed:
            while not self._closing and self._served is not None and self._served[0] == known:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    break
            served = self._served
        self.requests += 1
        headers = {"Content-Type": CONTENT_TYPE}
        if served is None:
            return web.Response(status=404, text="no policy set is published yet")
        revision, body = served
        headers["ETag"] = f'"{revision}"'
        if revision == known:
            return web.Response(status=304, headers=headers)
        return web.Response(status=200, body=body, headers=headers)

    async def _logs(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            if raw[:2] == b"\x1f\x8b":  # aiohttp has usually inflated it already
                raw = gzip.decompress(raw)
            events = json.loads(raw)
        except (OSError, EOFError, ValueError):
            return web.Response(status=400, text="decision logs must be a (gzipped) JSON array")
        if not isinstance(events, list):
            return web.Response(status=400, text="decision logs must be a JSON array")
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        async with self._log_lock:
            await asyncio.to_thread(self._append, lines)
        return web.Response(status=204)

    def _append(self, lines: str) -> None:
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log_file.open("a", encoding="utf-8") as f:
            f.write(lines)

    async def close(self) -> None:
        async with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["BUNDLE_NAME", "BUNDLE_PATH", "DECISION_LOG_FILE", "BundleServer", "build_bundle"]
