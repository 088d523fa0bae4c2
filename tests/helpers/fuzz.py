"""Property-based fuzzing of the gRPC API: a server subprocess, call checks, strategies.

Used by ``tests/test_fuzz.py``. Three parts:

* :class:`FuzzServer` runs ``interlock serve`` as a subprocess (one per test
  module) with a private data directory and a copy of the shipped policies,
  and talks to it over a synchronous channel, so that Hypothesis tests can be
  plain functions with no event loop.
* :data:`RPCS`, built from the service descriptors, lists every method of
  ControlPlane and PolicyService; :func:`call` sends any request (a message or
  raw bytes) to any of them and returns an :class:`Outcome`, which
  :func:`check` holds to the API's error model.
* Strategies: odd strings and ids, numbers, JSON values and Structs (deep,
  large), a generic request of any message type built from its descriptor,
  and targeted requests for each RPC that get past validation into the server.

Server bugs the fuzzing found (BUG-1 to BUG-8) are fixed; their minimal
reproductions are regression tests in ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import yaml
from google.protobuf import duration_pb2, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from interlock.policy.bundle import read_dir
from interlock.v1 import (
    control_plane_pb2,
    plans_pb2,
    policy_service_pb2,
)

from tests.helpers.process import CHANNEL_OPTIONS, INTERLOCK, clean_env, free_port, serve_argv

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
DOMAIN = "interlock.v1"
Json = Any
"""A JSON value: None, bool, int, float, str, list or dict of them."""

SHIPPED: dict[str, str] = read_dir(POLICIES)
"""The shipped policy set, read once (others may edit policies/ during a run): the
server's policy folder, the inline sets and the strategies' catalog all come from it."""


def policy_bundle() -> dict[str, str]:
    """The shipped policy set, as EvaluatePolicy's policy_set.files takes it (a copy)."""
    return dict(SHIPPED)


# Settings ----------------------------------------------------------------------

FUZZ_SCALE = float(os.environ.get("INTERLOCK_FUZZ_SCALE", "1"))
"""Multiplies every test's max_examples: INTERLOCK_FUZZ_SCALE=20 for a long local run."""
FUZZ_RANDOM = os.environ.get("INTERLOCK_FUZZ_RANDOM", "") == "1"
"""INTERLOCK_FUZZ_RANDOM=1: new random examples each run (exploring), instead of
the fixed derandomized set CI runs. A failure prints its reproduction."""


def fuzz_settings(max_examples: int) -> settings:
    """The fixed CI profile: derandomized (the same examples every run), no
    example database (nothing written to the repository), no per-example deadline."""
    return settings(
        max_examples=max(1, round(max_examples * FUZZ_SCALE)),
        derandomize=not FUZZ_RANDOM,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# The server --------------------------------------------------------------------

START_SECONDS = 30.0
MAX_MESSAGE = 64 * 1024 * 1024
"""The client's own send and receive limits: well above the server's 4 MiB, so
that an oversize request reaches the server and a large answer is read."""
FUZZ_CHANNEL_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    # gRPC's default soft limit on a response's metadata, as the hard limit too: a
    # client with default settings takes every trailer under 8 KiB and refuses a
    # growing share of those between 8 and 16 KiB; this one refuses exactly those
    # past 8 KiB, so that an error too large for some clients fails every run.
    ("grpc.max_metadata_size", 8 * 1024),
    ("grpc.absolute_max_metadata_size", 8 * 1024),
]


class FuzzServer:
    """``interlock serve`` as a subprocess on a loopback port, and a sync channel to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.policy_dir = root / "policies"
        for rel, content in SHIPPED.items():
            (self.policy_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.policy_dir / rel).write_text(content, encoding="utf-8")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self.revision = ""
        """The policy revision the server started with."""
        self.plans: list[str] = []
        """Ids of plans the server accepted, for the requests that name one."""
        self.decisions: list[tuple[str, str, int]] = []
        """(decision id, agent id, verdict) of the decisions the fuzzed calls got."""

    @property
    def channel(self) -> grpc.Channel:
        assert self._channel is not None, "the server is not running"
        return self._channel

    @property
    def log_path(self) -> Path:
        return self.root / f"interlock-serve-{self.starts}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logs(self) -> str:
        """The output of every start so far."""
        return "".join(
            (self.root / f"interlock-serve-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.root / f"interlock-serve-{n}.log").exists()
        )

    def start(self) -> None:
        assert self.proc is None, "the server is already running"
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                serve_argv(self.address, self.data_dir, self.policy_dir, "--no-fsync"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )
        self._channel = grpc.insecure_channel(self.address, options=FUZZ_CHANNEL_OPTIONS)
        health = health_pb2_grpc.HealthStub(self._channel)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"interlock serve exited with {self.proc.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(grpc.RpcError):
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"interlock serve not SERVING in time:\n{self.log()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"interlock serve died:\n{self.log()[-5000:]}"

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a clean shutdown) and wait; SIGKILL if it does not end. The exit code."""
        proc, self.proc = self.proc, None
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        assert proc is not None, "the server is not running"
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise AssertionError(
                    f"interlock serve ignored SIGTERM for {timeout:g}s:\n{self.log()[-5000:]}"
                ) from None
        return proc.returncode

    def close(self) -> None:
        """Kill it if it still runs; safe to call twice."""
        proc, self.proc = self.proc, None
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(INTERLOCK), "audit", "verify", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=False,
        )


# The RPCs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One method of the API, from its service descriptor."""

    service: str
    name: str
    request: type[Message]
    response: type[Message]
    streaming: bool

    @property
    def path(self) -> str:
        return f"/interlock.v1.{self.service}/{self.name}"

    def __repr__(self) -> str:  # short, for Hypothesis' falsifying examples
        return f"Rpc({self.service}.{self.name})"


def _rpcs() -> tuple[Rpc, ...]:
    out = []
    for module, service in (
        (control_plane_pb2, "ControlPlane"),
        (policy_service_pb2, "PolicyService"),
    ):
        for m in module.DESCRIPTOR.services_by_name[service].methods:
            assert not m.client_streaming, f"{service}.{m.name}: client streams are not fuzzed"
            out.append(
                Rpc(
                    service,
                    m.name,
                    message_factory.GetMessageClass(m.input_type),
                    message_factory.GetMessageClass(m.output_type),
                    m.server_streaming,
                )
            )
    return tuple(out)


RPCS = _rpcs()
"""Every method of ControlPlane and PolicyService, as the generated code declares them."""
RPC = {f"{r.service}.{r.name}": r for r in RPCS}

CALL_TIMEOUT = 5.0
"""Every unary call must answer within this."""
STREAM_WINDOW = 0.25
"""How long a fuzzed stream is read before it is cancelled."""
STREAM_ITEMS = 200
"""At most this many messages are read from one fuzzed stream."""
AWAIT_TIMEOUT = 1.0
"""The deadline of calls that may wait on purpose (AwaitApproval)."""
AWAITING = {"ControlPlane.AwaitApproval"}


@dataclass
class Outcome:
    """What one call came back with."""

    rpc: Rpc
    code: grpc.StatusCode
    details: str = ""
    reason: str = ""
    domain: str = ""
    violations: list[tuple[str, str]] = field(default_factory=list)
    has_status: bool = False
    """True when the trailer carried a google.rpc.Status."""
    inconsistent: str = ""
    """Why the trailer's google.rpc.Status could not be read, if it could not."""
    responses: list[Any] = field(default_factory=list)
    """The response (unary) or the messages read (stream)."""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.code == grpc.StatusCode.OK)

    @property
    def response(self) -> Any:
        assert self.ok and self.responses, self
        return self.responses[0]

    def __str__(self) -> str:
        return (
            f"{self.rpc.service}.{self.rpc.name} -> {self.code.name} {self.details!r} "
            f"reason={self.reason!r} violations={self.violations} in {self.elapsed:.3f}s"
        )


def _read_status(outcome: Outcome, err: grpc.RpcError) -> None:
    outcome.code = err.code()
    outcome.details = err.details() or ""
    try:
        status = rpc_status.from_call(err)
    except ValueError as exc:  # the trailer's status disagrees with the call's code
        outcome.inconsistent = str(exc)
        return
    if status is None:
        return
    outcome.has_status = True
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            outcome.reason, outcome.domain = info.reason, info.domain
        elif d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            outcome.violations = [(v.field, v.description) for v in br.field_violations]


def _body(request: Message | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def call(
    channel: grpc.Channel,
    rpc: Rpc,
    request: Message | bytes,
    *,
    metadata: Sequence[tuple[str, str]] | None = None,
    timeout: float | None = None,
    window: float = STREAM_WINDOW,
    max_items: int = STREAM_ITEMS,
) -> Outcome:
    """Send ``request`` (a message, or raw bytes as the request body) and read the answer.

    A stream is read for ``window`` seconds (its deadline) or ``max_items``
    messages, then cancelled; its outcome is DEADLINE_EXCEEDED when it was still
    open, CANCELLED when it was cut off after ``max_items``.
    """
    outcome = Outcome(rpc, grpc.StatusCode.OK)
    started = time.monotonic()
    if not rpc.streaming:
        method = channel.unary_unary(rpc.path, response_deserializer=rpc.response.FromString)
        if timeout is None:
            timeout = AWAIT_TIMEOUT if f"{rpc.service}.{rpc.name}" in AWAITING else CALL_TIMEOUT
        try:
            outcome.responses.append(method(_body(request), timeout=timeout, metadata=metadata))
        except grpc.RpcError as err:
            _read_status(outcome, err)
    else:
        stream = channel.unary_stream(rpc.path, response_deserializer=rpc.response.FromString)
        responses = stream(_body(request), timeout=window, metadata=metadata)
        try:
            for item in responses:
                outcome.responses.append(item)
                if len(outcome.responses) >= max_items:
                    responses.cancel()
                    outcome.code = grpc.StatusCode.CANCELLED
                    break
        except grpc.RpcError as err:
            _read_status(outcome, err)
    outcome.elapsed = time.monotonic() - started
    return outcome


# The error model ------------------------------------------------------------------

C = grpc.StatusCode
CLIENT_ERRORS = frozenset(
    {
        C.INVALID_ARGUMENT,
        C.NOT_FOUND,
        C.FAILED_PRECONDITION,
        C.ALREADY_EXISTS,
        C.PERMISSION_DENIED,
        C.OUT_OF_RANGE,
        C.RESOURCE_EXHAUSTED,
        C.UNIMPLEMENTED,
        C.UNAUTHENTICATED,
    }
)
"""The codes a request may fairly get for being odd: never INTERNAL, UNKNOWN,
UNAVAILABLE (the server is up) or DEADLINE_EXCEEDED (it must answer in time)."""


def decodes(rpc: Rpc, request: Message | bytes) -> bool:
    """Whether the server can parse the body: the same protobuf runtime, the same
    limits (e.g. upb's nesting depth of 100) as in the server process."""
    try:
        rpc.request.FromString(_body(request))
    except DecodeError:
        return False
    return True


# Server bugs this fuzzing found (BUG-1 to BUG-8) are fixed; each has its minimal
# reproduction as a regression test (test_bugN_*) in tests/test_fuzz.py.

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
"""The documented id pattern, matched with fullmatch (no trailing newline)."""


def valid_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def check(
    outcome: Outcome,
    request: Message | bytes,
    *,
    allowed: Iterable[grpc.StatusCode] = (),
) -> str | None:
    """Hold an outcome to the error model; return the known bug it is, if any.

    OK or a client error (plus ``allowed``); a stream may also have been cut off
    by the read window (DEADLINE_EXCEEDED, CANCELLED), an awaiting call by its
    deadline. Every error the server raises carries a google.rpc.Status with an
    ErrorInfo in the interlock.v1 domain; INVALID_ARGUMENT also a message and a
    BadRequest naming each offending field.
    """
    if currently_in_test_context():  # --hypothesis-show-statistics counts these
        event(f"{outcome.rpc.name} {outcome.reason or outcome.code.name}"[:80])
    name = f"{outcome.rpc.service}.{outcome.rpc.name}"
    expected = {C.OK, *CLIENT_ERRORS, *allowed}
    if outcome.rpc.streaming:
        expected |= {C.DEADLINE_EXCEEDED, C.CANCELLED}
    if name in AWAITING:
        expected.add(C.DEADLINE_EXCEEDED)
    assert outcome.code in expected, f"unexpected status: {outcome}"
    if outcome.code in (C.OK, C.DEADLINE_EXCEEDED, C.CANCELLED):
        return None
    if outcome.code == C.RESOURCE_EXHAUSTED and "SERVER: Received message larger than max" in (
        outcome.details
    ):
        return None  # the server's limit on a request's size (gRPC's own: no interlock status)
    if outcome.code == C.UNIMPLEMENTED and not outcome.has_status:
        # gRPC's own answer for a method the running server does not register
        # (the generated stubs are newer than the server build).
        return None
    assert not outcome.inconsistent, f"{outcome}: bad google.rpc.Status: {outcome.inconsistent}"
    assert outcome.has_status, f"no google.rpc.Status in the trailer: {outcome}"
    assert outcome.domain == DOMAIN and outcome.reason, f"no interlock ErrorInfo: {outcome}"
    assert outcome.details.strip(), f"no message: {outcome}"
    if not decodes(outcome.rpc, request):
        assert outcome.code == C.INVALID_ARGUMENT, f"an undecodable body: {outcome}"
        assert outcome.reason == "UNDECODABLE_REQUEST", outcome
    elif outcome.code == C.INVALID_ARGUMENT:
        assert outcome.violations, f"INVALID_ARGUMENT without a BadRequest: {outcome}"
        for i, (path, description) in enumerate(outcome.violations):
            # Only a last "and N more not shown" entry may name no field.
            last = i == len(outcome.violations) - 1
            assert description and (path or last), f"an empty field violation: {outcome}"
    return None


# Strings and numbers ---------------------------------------------------------------

_CATALOG: dict[str, Any] = yaml.safe_load(SHIPPED["interlock/catalog/data.yaml"])["tools"]
_AGENTS: dict[str, Any] = yaml.safe_load(SHIPPED["interlock/agents/data.yaml"])
TOOLS = tuple(sorted(_CATALOG))
AGENTS = tuple(sorted(_AGENTS))
GRANTED = {
    tool: tuple(
        a
        for a in AGENTS
        if set(_CATALOG[tool]["required_permissions"]) <= set(_AGENTS[a]["permissions"])
    )
    for tool in TOOLS
}
"""tool -> the agents that hold every permission it needs."""

TRANSFER = {"from_account": "AB123456", "to_account": "CD123456", "amount": 10, "currency": "EUR"}
VALID_ARGUMENTS: dict[str, dict[str, Json]] = {
    "vision_inspect": {"target": "login button"},
    "form_fill": {"form_id": "signup", "fields": {"email": "a@example.com"}},
    "form_clear": {"form_id": "signup"},
    "button_click": {"selector": "#submit"},
    "crm_lookup": {"record_id": "CU-12345"},
    "send_email": {"to": ["a@example.com"], "subject": "hello", "body": "hi"},
    "delete_record": {"record_id": "CU-12345", "reason": "customer asked"},
    "transfer_funds": TRANSFER,
    "refund_funds": TRANSFER,
}
"""Arguments each tool's schema accepts (tools added to the catalog later get {})."""

ODD = [
    "",
    " ",
    "\x00",
    "\n",
    "a\n",
    "agent1\n",
    "agent1 ",
    " agent1",
    "AGENT1",
    "agent1\x00",
    "a" * 128,
    "a" * 129,
    "-a",
    "_",
    "a/b",
    "a b",
    "../..",
    "%s%n",
    "'; DROP TABLE plans; --",
    "\u202eevil",
    "e\u0301",
    "\U0001f600",
    "\ufeff",
    "\ud7ff",
    "\U0010ffff",
]
"""Strings that have broken parsers before."""


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each with its weight; shrinks towards the first."""
    total = sum(w for w, _ in options)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        n = draw(st.integers(0, total - 1))
        for w, strategy in options:
            if n < w:
                return draw(strategy)
            n -= w
        raise AssertionError("unreachable")

    return pick()


text = st.text(st.characters(codec="utf-8"), max_size=24)
"""Any valid Unicode (protobuf strings are UTF-8: no lone surrogates)."""
long_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["a", "\u00e9", "\U0001f600", "\x00", "."]),
    st.sampled_from([127, 128, 129, 256, 257, 1024, 1025, 4096, 4097, 20001]),
)
"""Strings at and past the length limits the API documents."""
strings = weighted((5, text), (3, st.sampled_from(ODD)), (1, long_text))
fresh_ids = st.from_regex(ID_RE, fullmatch=True)
"""Ids the documented pattern accepts."""


@st.composite
def known_or_any(draw: st.DrawFn, known: Sequence[str]) -> str:
    """One of ``known`` (read when drawn: the list grows as the server makes things),
    a valid id, or an odd string. It draws the same way whatever ``known`` holds,
    so that Hypothesis can replay an example after the list has changed."""
    index = draw(st.integers(0, 2**16))
    other = draw(ids())
    use_known = draw(st.integers(0, 2)) > 0
    return known[index % len(known)] if known and use_known else other


def ids(*known: str) -> st.SearchStrategy[str]:
    """An id field: one of ``known``, a valid random id, or an odd string."""
    if known:
        return weighted((4, st.sampled_from(known)), (2, fresh_ids), (2, strings))
    return weighted((1, fresh_ids), (1, strings))


agents = ids(*AGENTS)
tools = ids(*TOOLS)

SPECIAL_FLOATS = [0.0, -0.0, 1.0, 0.5, 1.0000000000000002, 5e-324, -1.0, 1e308, 2.0**53]
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*SPECIAL_FLOATS, math.nan, math.inf, -math.inf]),
)
confidences = weighted((4, st.floats(0.0, 1.0)), (1, floats))
"""Mostly valid confidences, with NaN, infinities and out-of-range ones."""
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = weighted(
    (4, st.integers(0, 200)),
    (2, st.sampled_from([0, 1, 99, 100, 101, 1000, 1001, 2**31, 2**32 - 1])),
    (1, st.integers(0, 2**32 - 1)),
)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = weighted(
    (3, st.integers(0, 10_000)),
    (1, st.sampled_from([2**53, 2**63 - 1, 2**63, 2**64 - 1])),
    (1, st.integers(0, 2**64 - 1)),
)


def enums(values: Iterable[int]) -> st.SearchStrategy[Any]:
    """A proto3 enum field: mostly a known value, else any int32 (open enums keep
    unknown values). Typed Any: the generated stubs type the fields by their enum."""
    return weighted((6, st.sampled_from(sorted(values))), (2, st.integers(-3, 40)), (1, INT32))


# JSON and Structs --------------------------------------------------------------------

json_numbers = st.one_of(
    st.integers(-(2**63), 2**63), st.floats(allow_nan=True, allow_infinity=True)
)
json_leaves = st.one_of(st.none(), st.booleans(), json_numbers, strings)
json_keys = st.one_of(text, st.sampled_from(["", ".", "a.b", "[0]", '"', "$ref", "\x00"]))
json_values: st.SearchStrategy[Json] = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(json_keys, inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects: st.SearchStrategy[dict[str, Json]] = st.dictionaries(
    json_keys, json_values, max_size=5
)


def nest(leaf: Json, shape: Sequence[bool]) -> Json:
    """Wrap ``leaf`` in one object (True) or list (False) per element of shape, innermost last."""
    value = leaf
    for in_object in reversed(shape):
        value = {"a": value} if in_object else [value]
    return value


deep_objects: st.SearchStrategy[dict[str, Json]] = st.builds(
    lambda shape, leaf: {"deep": nest(leaf, shape)},
    st.lists(st.booleans(), min_size=15, max_size=50),
    json_leaves,
)
"""Arguments nested 15-50 levels deep, around protobuf's decoding depth limit
(upb's 100 levels: a Struct level costs 3, a list level 2), so that about half
of them decode. (The server's own plan limit, 64 levels, is out of reach.)"""


def put_value(target: struct_pb2.Value, value: Json) -> None:
    """Write a JSON value into a Value in place (no copy: copies re-parse and
    would hit the depth limit on the client side)."""
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = float(value)
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, list):
        items = target.list_value
        items.SetInParent()
        for item in value:
            put_value(items.values.add(), item)
    else:
        put_struct(target.struct_value, value)


def put_struct(target: struct_pb2.Struct, value: Mapping[str, Json]) -> None:
    target.SetInParent()
    for key, item in value.items():
        put_value(target.fields[key], item)


def canonical_size(value: Json) -> int:
    """The size the server measures arguments by: canonical JSON (sorted keys) in bytes.
    Struct numbers are doubles, and the server gives integral ones back as ints."""
    return len(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def sized_form_fill(size: int) -> dict[str, Json]:
    """form_fill arguments its schema accepts whose canonical JSON is exactly ``size``
    bytes (for sizes from ~200 to ~260 000)."""
    fields: dict[str, str] = {}
    args: dict[str, Json] = {"form_id": "signup", "fields": fields}
    n = 0
    while canonical_size(args) < size:
        key = f"f{n:03d}"
        fields[key] = ""
        fields[key] = "x" * min(4096, size - canonical_size(args))
        n += 1
    assert canonical_size(args) == size, (size, canonical_size(args))
    return args


@st.composite
def mutated(draw: st.DrawFn, base: Mapping[str, Json]) -> dict[str, Json]:
    """``base`` with one member set to a random value, removed, or added."""
    out = dict(base)
    keys = sorted(out)
    op = draw(st.sampled_from(["set", "drop", "add"] if keys else ["add"]))
    if op == "set":
        out[draw(st.sampled_from(keys))] = draw(json_values)
    elif op == "drop":
        del out[draw(st.sampled_from(keys))]
    else:
        out[draw(json_keys)] = draw(json_values)
    return out


def arguments_for(tool: str) -> st.SearchStrategy[dict[str, Json]]:
    """Arguments for a call of ``tool``: mostly valid or nearly valid; else random,
    deep or large."""
    valid = VALID_ARGUMENTS.get(tool, {})
    return weighted(
        (5, st.just(valid)),
        (4, mutated(valid)),
        (2, json_objects),
        (1, deep_objects),
        (1, st.sampled_from([65535, 65536, 65537]).map(sized_form_fill)),
    )


# Durations and timestamps ------------------------------------------------------------


@st.composite
def durations(draw: st.DrawFn) -> duration_pb2.Duration:
    """Valid, negative, and out-of-range durations (seconds past +-10 000 years,
    nanos past +-999 999 999, mixed signs): the proto only documents the limits.

    """
    return duration_pb2.Duration(
        seconds=draw(st.one_of(st.integers(-10, 100), INT64)),
        nanos=draw(st.one_of(st.integers(0, 999_999_999), INT32)),
    )


@st.composite
def timestamps(draw: st.DrawFn) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=draw(INT64), nanos=draw(INT32))


# Any message, from its descriptor ------------------------------------------------------

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_DOUBLE: floats,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: strings,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
}
MAX_DEPTH = 3
"""How deeply the generic strategy nests messages (Structs excepted)."""


# Descriptors are typed Any: the runtime's (upb) classes are not the stubs' ones.


def _synthetic(oneof: Any) -> bool:
    """A proto3 ``optional`` field's oneof."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def _scalar(f: Any) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        return enums(v.number for v in f.enum_type.values)
    if f.type == FieldDescriptor.TYPE_STRING and f.name.endswith("_id"):
        return ids()
    return _SCALARS[f.type]


def _fill_well_known(draw: st.DrawFn, msg: Message) -> bool:
    """Fill a google.protobuf type with its own strategy; False if it is not one."""
    if isinstance(msg, struct_pb2.Struct):
        put_struct(msg, draw(weighted((4, json_objects), (1, deep_objects))))
    elif isinstance(msg, struct_pb2.Value):
        put_value(msg, draw(json_values))
    elif isinstance(msg, struct_pb2.ListValue):
        put_value(msg.values.add(), draw(json_values))
    elif isinstance(msg, duration_pb2.Duration):
        msg.CopyFrom(draw(durations()))
    elif isinstance(msg, timestamp_pb2.Timestamp):
        msg.CopyFrom(draw(timestamps()))
    else:
        return False
    return True


def fill(draw: st.DrawFn, msg: Message, depth: int = 0) -> None:
    """Set a random selection of ``msg``'s fields to random values, in place."""
    if _fill_well_known(draw, msg):
        return
    descriptor = msg.DESCRIPTOR
    chosen = {
        o.name: draw(st.sampled_from([None, *o.fields]))
        for o in descriptor.oneofs
        if not _synthetic(o)
    }
    for f in descriptor.fields:
        o = f.containing_oneof
        if o is not None and not _synthetic(o):
            if chosen[o.name] is not f:
                continue
        elif not draw(st.booleans()):
            continue
        _fill_field(draw, msg, f, depth)


def _fill_field(draw: st.DrawFn, msg: Message, f: Any, depth: int) -> None:
    holder = getattr(msg, f.name)
    sub = f.message_type
    if sub is not None and sub.GetOptions().map_entry:
        key_field, value_field = sub.fields_by_name["key"], sub.fields_by_name["value"]
        for key in draw(st.lists(_scalar(key_field), max_size=3)):
            if value_field.message_type is None:
                holder[key] = draw(_scalar(value_field))
            elif depth < MAX_DEPTH:
                fill(draw, holder[key], depth + 1)
    elif f.is_repeated:
        count = draw(st.integers(0, 3))
        if sub is None:
            holder.extend(draw(st.lists(_scalar(f), min_size=count, max_size=count)))
        elif depth < MAX_DEPTH:
            for _ in range(count):
                fill(draw, holder.add(), depth + 1)
    elif sub is not None:
        holder.SetInParent()
        if depth < MAX_DEPTH:
            fill(draw, holder, depth + 1)
    else:
        setattr(msg, f.name, draw(_scalar(f)))


def any_message(cls: type[Message]) -> st.SearchStrategy[Message]:
    """A ``cls`` with random fields: any value of any field the descriptor declares."""
    if not cls.DESCRIPTOR.fields:  # an empty request: nothing to draw
        return st.builds(cls)
    return _any_message(cls)


@st.composite
def _any_message(draw: st.DrawFn, cls: type[Message]) -> Message:
    msg = cls()
    fill(draw, msg)
    return msg


# Raw bodies ---------------------------------------------------------------------------


@st.composite
def raw_bodies(draw: st.DrawFn, rpc: Rpc) -> bytes:
    """A request body: random bytes, a request with bytes flipped, cut or inserted,
    or a request with an unknown field appended."""
    kind = draw(st.sampled_from(["random", "mutated", "unknown_field"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    body = bytearray(draw(any_message(rpc.request)).SerializeToString())
    if kind == "unknown_field":
        number = draw(st.integers(100, 2**29 - 1))
        payload = draw(st.binary(max_size=16))
        tag = _varint(number << 3 | 2)
        return bytes(body) + tag + _varint(len(payload)) + payload
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(body)))
        if op == "flip" and at < len(body):
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del body[at:]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(body)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


metadata = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.sampled_from(["x-request-id", "x-fuzz", "authorization"]),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200),
        ),
        max_size=2,
    ),
)
"""Call metadata: request ids of any printable length (the server keeps 1-128)."""


# Targeted requests ------------------------------------------------------------------------

pb = control_plane_pb2
_plan_counter = itertools.count(1)
REUSED_PLAN_IDS = ("fz-1", "fz-2", "fz-3")
"""Plan ids that early examples use: later ones submit them again (ALREADY_EXISTS)."""


def fresh_plan_id(prefix: str = "fz") -> str:
    return f"{prefix}-{next(_plan_counter)}"


# Requests holding Structs are built in place: copying a message (CopyFrom, extend,
# a constructor argument) re-parses it, and deep arguments would not parse.


def _fill_call(draw: st.DrawFn, target: Any) -> None:
    """agent_id, tool, confidence and arguments of a RequestToolCallRequest or a
    ToolCallInput: mostly a valid call (a catalog tool, a granted agent), with
    odd parts now and then."""
    tool = draw(weighted((6, st.sampled_from(TOOLS)), (1, tools)))
    granted = GRANTED.get(tool) or AGENTS
    target.tool = tool
    target.agent_id = draw(
        weighted((4, st.sampled_from(granted)), (2, st.sampled_from(AGENTS)), (1, agents))
    )
    confidence = draw(weighted((8, confidences), (1, st.none())))
    if confidence is not None:
        target.confidence = confidence
    if draw(weighted((6, st.just(True)), (1, st.just(False)))):
        put_struct(target.arguments, draw(arguments_for(tool)))


@st.composite
def tool_calls(draw: st.DrawFn) -> control_plane_pb2.RequestToolCallRequest:
    """RequestToolCall requests, some with plan/step ids (and an approval id, once
    the field exists)."""
    req = pb.RequestToolCallRequest()
    _fill_call(draw, req)
    if draw(st.integers(0, 4)) == 0:
        req.plan_id = draw(ids())
        req.step_id = draw(ids())
    if "approval_id" in req.DESCRIPTOR.fields_by_name and draw(st.integers(0, 3)) == 0:
        setattr(req, "approval_id", draw(ids()))  # noqa: B010  # a newer field
    return req


def _fill_step(draw: st.DrawFn, step: plans_pb2.StepSpec, step_ids: Sequence[str]) -> None:
    """A step made of valid and odd parts, depending on any of ``step_ids``."""
    step.Clear()
    step.step_id = draw(st.sampled_from(step_ids) | ids())
    step.tool = draw(tools)
    step.agent_id = draw(st.sampled_from(GRANTED.get(step.tool) or AGENTS) | agents)
    confidence = draw(st.none() | confidences)
    if confidence is not None:
        step.confidence = confidence
    if draw(st.booleans()):
        put_struct(step.arguments, draw(arguments_for(step.tool)))
    step.depends_on.extend(draw(st.lists(st.sampled_from(step_ids) | ids(), max_size=3)))


def _fill_good_steps(draw: st.DrawFn, plan: plans_pb2.PlanSpec) -> None:
    """Steps that validate: catalog tools, granted agents, valid arguments, a DAG
    (a dependency only on an earlier step); sometimes one back edge (a cycle)."""
    count = draw(st.integers(1, 5))
    for i in range(count):
        tool = draw(st.sampled_from(TOOLS))
        step = plan.steps.add(
            step_id=f"s{i}",
            tool=tool,
            agent_id=draw(st.sampled_from(GRANTED.get(tool) or AGENTS)),
            confidence=draw(st.floats(0.0, 1.0)),
        )
        if draw(st.booleans()):
            put_struct(step.arguments, VALID_ARGUMENTS.get(tool, {}))
        if i:
            step.depends_on.extend(
                f"s{j}" for j in sorted(draw(st.sets(st.integers(0, i - 1), max_size=2)))
            )
    if count > 1 and draw(st.integers(0, 4)) == 0:
        plan.steps[0].depends_on.append(f"s{count - 1}")


def _mutate_step(draw: st.DrawFn, step: plans_pb2.StepSpec, step_ids: Sequence[str]) -> None:
    """One part of a step made odd (or the whole step replaced)."""
    part = draw(
        st.sampled_from(
            ["step_id", "tool", "agent_id", "confidence", "arguments", "depends_on", "all"]
        )
    )
    if part in ("step_id", "tool", "agent_id"):
        setattr(step, part, draw(ids(*step_ids, *TOOLS, *AGENTS)))
    elif part == "confidence":
        confidence = draw(st.none() | floats)
        if confidence is None:
            step.ClearField("confidence")
        else:
            step.confidence = confidence
    elif part == "arguments":
        step.ClearField("arguments")
        put_struct(step.arguments, draw(arguments_for(step.tool)))
    elif part == "depends_on":
        step.depends_on.append(draw(st.sampled_from(step_ids) | ids()))
    else:
        _fill_step(draw, step, step_ids)


@st.composite
def plan_specs(draw: st.DrawFn) -> control_plane_pb2.SubmitPlanRequest:
    """A spec plan: valid steps (a DAG, or with a cycle), with an odd part or two,
    or odd steps only."""
    request = pb.SubmitPlanRequest()
    plan = request.spec
    plan.plan_id = draw(weighted((6, st.builds(fresh_plan_id)), (1, ids(*REUSED_PLAN_IDS))))
    kind = draw(weighted((3, st.just("good")), (3, st.just("mutated")), (1, st.just("odd"))))
    if kind == "odd":
        for _ in range(draw(st.integers(0, 6))):
            _fill_step(draw, plan.steps.add(), ["a", "b", "c", "d"])
    else:
        _fill_good_steps(draw, plan)
        step_ids = [s.step_id for s in plan.steps]
        for _ in range(draw(st.integers(1, 2)) if kind == "mutated" else 0):
            step = plan.steps[draw(st.integers(0, len(step_ids) - 1))]
            _mutate_step(draw, step, step_ids)
    if draw(st.integers(0, 3)) == 0:
        for key, value in draw(st.dictionaries(strings, strings, max_size=3)).items():
            plan.labels[key] = value
    return request


@st.composite
def phase21_plans(draw: st.DrawFn) -> control_plane_pb2.SubmitPlanRequest:
    """A Phase-21 plan: an execution order over assigned tools, with junk mixed in."""
    plan = plans_pb2.Phase21Plan(plan_id=draw(st.one_of(st.builds(fresh_plan_id), ids())))
    chosen = draw(st.lists(st.sampled_from(TOOLS), max_size=4, unique=True))
    for tool in chosen:
        agent = draw(st.sampled_from(GRANTED.get(tool) or AGENTS) | agents)
        plan.agent_assignments[agent].tools.append(tool)
    order = list(chosen)
    if draw(st.booleans()):
        order = draw(st.permutations(order))
    for _ in range(draw(weighted((4, st.just(0)), (1, st.integers(1, 2))))):
        order.insert(draw(st.integers(0, len(order))), draw(tools))
    plan.execution_order.extend(order)
    for tool in order:
        if draw(st.integers(0, 5)):
            plan.confidence_scores[tool] = draw(confidences)
    for _ in range(draw(weighted((4, st.just(0)), (1, st.integers(1, 2))))):  # junk
        plan.agent_assignments[draw(agents)].tools.extend(draw(st.lists(tools, max_size=2)))
        plan.confidence_scores[draw(tools)] = draw(confidences)
    return pb.SubmitPlanRequest(phase21=plan)


submit_plans = weighted(
    (4, plan_specs()),
    (2, phase21_plans()),
    (1, st.just(pb.SubmitPlanRequest())),
    (1, any_message(pb.SubmitPlanRequest)),
)


@st.composite
def policy_files(draw: st.DrawFn) -> dict[str, str]:
    """An inline policy set: the shipped one unchanged or with one file broken,
    or a few junk files."""
    files = policy_bundle()
    kind = draw(st.sampled_from(["shipped", "data", "rego", "drop", "junk"]))
    if kind == "shipped":
        return files
    if kind == "data":
        data_paths = sorted(p for p in files if p.endswith(("data.yaml", "data.json")))
        path = draw(st.sampled_from([*data_paths, "data.yaml", "interlock/data.json"]))
        doc: Any = yaml.safe_load(files[path]) if path in files else {}
        if isinstance(doc, dict) and doc and draw(st.booleans()):
            doc = _mutate_document(draw, doc)
        else:
            doc = draw(json_values)
        fmt = draw(st.sampled_from(["json", "yaml", "text"]))
        if fmt == "json":
            files[path] = json.dumps(doc)
        elif fmt == "yaml":
            files[path] = yaml.safe_dump(doc, allow_unicode=True)
        else:
            files[path] = draw(strings)
        return files
    if kind == "rego":
        path = draw(st.sampled_from(sorted(p for p in files if p.endswith(".rego"))))
        files[path] = draw(
            st.one_of(
                strings,
                st.just(files[path].replace("if", "iff", 1)),
                st.just(files[path] + "\nmain := 1\n"),
            )
        )
        return files
    if kind == "drop":
        del files[draw(st.sampled_from(sorted(files)))]
        return files
    junk_paths = st.one_of(strings, st.sampled_from(["x.rego", "data.yaml", "a/data.json"]))
    return draw(st.dictionaries(junk_paths, strings, max_size=4))


def _mutate_document(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """One value somewhere in a data document replaced with a random JSON value."""
    node: Any = doc
    while True:
        keys = sorted(node) if isinstance(node, dict) else []
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict) and child and draw(st.integers(0, 2)):
            node = child
            continue
        node[key] = draw(json_values)
        break
    return doc


@st.composite
def evaluate_requests(
    draw: st.DrawFn, inline: bool | None = None
) -> policy_service_pb2.EvaluatePolicyRequest:
    """EvaluatePolicy: a tool call (as RequestToolCall builds it) or a raw input, on
    the active policy set or an inline one (``inline``: always, never, or either)."""
    req = policy_service_pb2.EvaluatePolicyRequest()
    which = draw(st.sampled_from(["tool_call", "raw_input", "neither"]))
    if which == "tool_call":
        req.tool_call.SetInParent()
        _fill_call(draw, req.tool_call)
        req.tool_call.live_in_flight = draw(UINT32)
    elif which == "raw_input":
        put_struct(req.raw_input, draw(st.one_of(json_objects, _policy_inputs())))
    if inline is True or (inline is None and draw(st.integers(0, 3)) == 0):
        files = draw(policy_files())
        req.policy_set.SetInParent()
        for path, content in files.items():
            req.policy_set.files[path] = content
    return req


@st.composite
def _policy_inputs(draw: st.DrawFn) -> dict[str, Json]:
    """A raw input shaped like the ones the server builds, with one part broken."""
    tool = draw(st.sampled_from(TOOLS))
    spec = _CATALOG[tool]
    base: dict[str, Json] = {
        "tool": tool,
        "contract": {
            "name": tool,
            "risk": spec["risk"],
            "reversible": spec["reversible"],
            "compensating_tool": spec["compensating_tool"],
            "required_permissions": spec["required_permissions"],
        },
        "agent": {"id": "agent1", "permissions": _AGENTS["agent1"]["permissions"]},
        "confidence": draw(confidences.filter(math.isfinite)),
        "arguments": VALID_ARGUMENTS.get(tool, {}),
        "counts": {"live_in_flight": draw(st.integers(0, 10))},
        "switches": {},
    }
    if draw(st.booleans()):
        part = draw(st.sampled_from(sorted(base)))
        value = base[part]
        base[part] = (
            draw(mutated(value))
            if isinstance(value, dict) and draw(st.booleans())
            else draw(json_values.filter(_finite))
        )
    return base


def _finite(value: Json) -> bool:
    """No NaN or infinity anywhere (the server refuses them in Structs)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True
