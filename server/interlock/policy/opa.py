"""The OPA engine: a real OPA server fed with bundles, asked over its REST API.

**The serving OPA** (``opa_url``) holds one revision: the active set, which
Interlock serves as a bundle (:mod:`interlock.policy.bundleserver`) and OPA's
bundle plugin downloads (long polling). Decisions query OPA's stable path,
``data.interlock.decision.main``, with ``provenance=true``, so OPA says which
bundle revision it evaluated. An answer from another revision than the active
one (OPA has not loaded the newest set yet, or was restarted and has not
loaded any) is refused: :class:`StaleRevision`, a policy evaluation error, so
the decision fails closed (DENY/MOCK, never LIVE) rather than being labelled
with a revision it did not come from.

A reload makes a new set live with :meth:`OpaEngine.activate`: the bundle is
published, and the swap waits (``opa_revision_wait_seconds`` at most) until
OPA reports the new revision. Between OPA loading it and the swap (a few
milliseconds with long polling) decisions fail closed; when the wait runs out
the swap happens anyway, and decisions fail closed until OPA catches up.

**Candidates** (a set being checked before it may serve: a reload's probes
and gate, replay on OPA, the differential tests) never touch the serving OPA,
which holds the ``interlock`` root for the active set alone. Each candidate
gets an OPA process of its own (:class:`OpaCandidate`: ``opa run --server``
on a free loopback port with the candidate's bundle, from ``opa_bin``), so it
is evaluated by the same OPA code without changing what the serving OPA
answers; it is stopped when the candidate is released.

Policies refer to their data any way they like (``data.interlock...`` or
``data["interlock"]``): nothing is rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from interlock.errors import PolicyEvaluationError, PolicyLoadError
from interlock.policy.bundle import PolicySet
from interlock.policy.bundleserver import BUNDLE_NAME, BundleServer, build_bundle
from interlock.policy.engine import DECISION_PACKAGE, DECISION_RULE, PolicyDecision, parse_decision

log = logging.getLogger(__name__)

DECISION_PATH = f"{DECISION_PACKAGE}.{DECISION_RULE}".replace(".", "/")
REVISION_PROBE = "system/interlock_revision"
"""A path outside the bundle's root: asking it is cheap (undefined) and its
provenance names the revision OPA holds."""
CANDIDATE_START_SECONDS = 20.0
REVISION_POLL_SECONDS = 0.02


class StaleRevision(PolicyEvaluationError):
    """OPA evaluated another revision than the one expected: fail closed."""

    reason = "POLICY_REVISION_MISMATCH"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:2000]


def _short(revision: str) -> str:
    return revision[:12] if revision else "none"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Rest:
    """OPA's data API at one base URL, with provenance."""

    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def data(self, path: str, policy_input: Any = None) -> tuple[Any, str]:
        """(the rule's value or None when undefined, the revision OPA evaluated)."""
        url = f"{self.base}/v1/data/{path}?provenance=true"
        try:
            if policy_input is None:
                request = self.session().get(url)
            else:
                request = self.session().post(url, json={"input": policy_input})
            async with request as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    message = body.get("message", "") if isinstance(body, dict) else ""
                    raise PolicyEvaluationError(
                        f"OPA query failed: HTTP {response.status} {message}".strip()
                    )
        except PolicyEvaluationError:
            raise
        except Exception as exc:
            raise PolicyEvaluationError(f"OPA query failed: {_describe(exc)}") from None
        if not isinstance(body, dict):
            raise PolicyEvaluationError("OPA query failed: the answer is not a JSON object")
        bundles = (body.get("provenance") or {}).get("bundles") or {}
        if BUNDLE_NAME not in bundles and len(bundles) == 1:
            # A candidate's OPA names its one bundle (--bundle) by the file's path.
            bundles = {BUNDLE_NAME: next(iter(bundles.values()))}
        revision = (bundles.get(BUNDLE_NAME) or {}).get("revision", "")
        return body.get("result"), revision if isinstance(revision, str) else ""

    async def healthy(self) -> bool:
        try:
            async with self.session().get(f"{self.base}/health") as response:
                return response.status == 200
        except Exception:
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Evaluates:
    """Evaluate on an OPA that must report ``revision``."""

    revision: str
    _rest: _Rest

    def _stale(self, evaluated: str) -> None:
        """Called before a StaleRevision is raised."""

    async def query(self, entrypoint: str, policy_input: dict[str, Any]) -> Any:
        result, evaluated = await self._rest.data(entrypoint or DECISION_PATH, policy_input)
        if evaluated != self.revision:
            self._stale(evaluated)
            raise StaleRevision(
                f"OPA evaluated policy revision {_short(evaluated)}, not the active "
                f"{_short(self.revision)} (it has not loaded the active bundle yet)"
            )
        return result

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return parse_decision(await self.query("", policy_input))


class OpaPolicy(_Evaluates):
    """The active set, as the serving OPA holds it through the bundle."""

    def __init__(self, engine: OpaEngine, policy_set: PolicySet) -> None:
        self._engine = engine
        self._rest = engine.rest
        self.policy_set = policy_set
        self.revision = policy_set.revision

    def _stale(self, evaluated: str) -> None:
        self._engine.stale_revisions += 1
        if self._engine.on_stale is not None:
            self._engine.on_stale()

    async def release(self) -> None:
        """Nothing to free: the next bundle replaces it in OPA."""


class OpaCandidate(_Evaluates):
    """A set being checked, on an OPA process of its own (see the module docstring)."""

    def __init__(self, engine: OpaEngine, policy_set: PolicySet) -> None:
        self._engine = engine
        self.policy_set = policy_set
        self.revision = policy_set.revision
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: Path | None = None
        self._rest = _Rest("http://127.0.0.1:0", engine.timeout)

    async def start(self) -> None:
        body = await asyncio.to_thread(build_bundle, self.policy_set)
        self._dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="interlock-opa-"))
        bundle = self._dir / "bundle.tar.gz"
        await asyncio.to_thread(bundle.write_bytes, body)
        for _attempt in range(3):
            port = free_port()
            self._rest = _Rest(f"http://127.0.0.1:{port}", self._engine.timeout)
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    self._engine.opa_binary(),
                    "run",
                    "--server",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "error",
                    "--disable-telemetry",
                    "--bundle",
                    str(bundle),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                raise PolicyLoadError(f"cannot run OPA to check the set: {exc}") from None
            error = await self._wait_ready()
            if not error:
                return
            await self._stop_process()
            if "address already in use" not in error:
                raise PolicyLoadError(f"OPA refused the policy set: {error}")
        raise PolicyLoadError("OPA could not start to check the set: no free port")

    async def _wait_ready(self) -> str:
        """ "" once OPA answers; else why it did not."""
        assert self._proc is not None
        deadline = time.monotonic() + CANDIDATE_START_SECONDS
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                break
            if await self._rest.healthy():
                return ""
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 0.05)
        if self._proc.returncode is None:
            return f"OPA did not start within {CANDIDATE_START_SECONDS:g}s"
        assert self._proc.stderr is not None
        err = (await self._proc.stderr.read()).decode(errors="replace")
        return " ".join(err.split())[:2000] or f"opa exited with {self._proc.returncode}"

    async def _stop_process(self) -> None:
        await self._rest.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def release(self) -> None:
        self._engine.candidates.discard(self)
        await self._stop_process()
        directory, self._dir = self._dir, None
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, True)


class OpaEngine:
    name = "opa"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.5,
        bundles: BundleServer | None = None,
        opa_bin: str = "opa",
        revision_wait: float = 10.0,
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"opa_url must be http(s)://host:port, not {url!r}")
        self.timeout = timeout
        self.rest = _Rest(url, timeout)
        self.bundles = bundles
        self.opa_bin = opa_bin
        self.revision_wait = revision_wait
        self.on_stale = on_stale
        """Called for each answer refused for its revision (a metric)."""
        self.stale_revisions = 0
        self.candidates: set[OpaCandidate] = set()
        """Candidates not released yet (each an OPA process): stopped by close()."""
        self._bundles_started = False

    def opa_binary(self) -> str:
        found = shutil.which(self.opa_bin)
        if found is None:
            raise PolicyLoadError(
                f"opa_bin {self.opa_bin!r} is not an executable: Interlock runs OPA itself "
                "to check a policy set before it serves"
            )
        return found

    async def compile(self, policy_set: PolicySet) -> OpaCandidate:
        """The set on an OPA process of its own, to be checked; not live."""
        candidate = OpaCandidate(self, policy_set)
        self.candidates.add(candidate)
        try:
            await candidate.start()
        except BaseException:
            await candidate.release()
            raise
        return candidate

    async def activate(self, policy_set: PolicySet) -> OpaPolicy:
        """Publish the set to the serving OPA and wait (bounded) until OPA
        reports it; the caller swaps it in afterwards either way."""
        if self.bundles is None:
            raise PolicyLoadError("this OPA engine has no bundle server to publish from")
        if not self._bundles_started:
            await self.bundles.start()
            self._bundles_started = True
        await self.bundles.publish(policy_set)
        if not await self.wait_for_revision(policy_set.revision, self.revision_wait):
            log.warning(
                "OPA at %s has not loaded policy revision %s within %gs; decisions fail "
                "closed until it does (its bundle service: %s)",
                self.rest.base,
                policy_set.short_revision,
                self.revision_wait,
                self.bundles.url,
            )
        return OpaPolicy(self, policy_set)

    async def revision(self) -> str:
        """The bundle revision the serving OPA holds ("" when none or unreachable)."""
        try:
            _, revision = await self.rest.data(REVISION_PROBE)
        except PolicyEvaluationError:
            return ""
        return revision

    async def wait_for_revision(self, revision: str, within: float) -> bool:
        deadline = time.monotonic() + within
        while True:
            if await self.revision() == revision:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(REVISION_POLL_SECONDS)

    async def available(self) -> bool:
        try:
            return await asyncio.wait_for(self.rest.healthy(), self.timeout)
        except TimeoutError:
            return False

    async def close(self) -> None:
        for candidate in list(self.candidates):
            await candidate.release()
        await self.rest.close()
        if self.bundles is not None and self._bundles_started:
            await self.bundles.close()
            self._bundles_started = False


__all__ = ["OpaCandidate", "OpaEngine", "OpaPolicy", "StaleRevision"]
