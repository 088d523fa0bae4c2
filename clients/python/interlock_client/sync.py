"""A blocking client: :class:`SyncInterlockClient`, for code without an event loop.

It runs an :class:`~interlock_client.client.InterlockClient` on a private event
loop in a background (daemon) thread and waits for each call's result, so it
works the same whether or not the calling thread has an event loop of its own.
Use it as a context manager, or call :meth:`SyncInterlockClient.close`.

Its methods block the calling thread: inside a coroutine, use
:class:`~interlock_client.client.InterlockClient` instead (or call the blocking
client through ``asyncio.to_thread``), or that coroutine's event loop stalls.
:meth:`SyncInterlockClient.pull_work` is a blocking generator: each ``next()``
waits for the next work item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import grpc

from interlock_client.client import (
    DEFAULT_RETRIES,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    InterlockClient,
)
from interlock_client.v1 import (
    control_plane_pb2,
    grants_pb2,
    observe_pb2,
    plans_pb2,
    policy_service_pb2,
    trust_pb2,
    types_pb2,
)

_T = TypeVar("_T")


class SyncInterlockClient:
    """The blocking twin of :class:`~interlock_client.client.InterlockClient`.

    Same arguments, same methods, same return values and errors
    (:class:`~interlock_client.errors.InterlockError`); each method blocks until
    the call finishes. Safe to use from several threads at once. The raw
    ``control_plane`` and ``policy_service`` stubs are the asyncio client's alone:
    they belong to the background loop and cannot be awaited from another thread.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] | None = None,
        dev_principal: str | None = None,
    ) -> None:
        self._client = InterlockClient(
            target,
            timeout=timeout,
            retries=retries,
            token=token,
            credentials=credentials,
            options=options,
            dev_principal=dev_principal,
        )
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="interlock-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def target(self) -> str:
        return self._client.target

    @property
    def timeout(self) -> float:
        return self._client.timeout

    @property
    def retries(self) -> int:
        return self._client.retries

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the SyncInterlockClient is closed")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Close the channel and stop the background loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    def __enter__(self) -> SyncInterlockClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The calls, as in InterlockClient ----------------------------------------

    def list_tools(self) -> control_plane_pb2.ListToolsResponse:
        return self._run(self._client.list_tools())

    def request_tool_call(
        self,
        agent_id: str,
        tool: str,
        arguments: Mapping[str, Any] | None,
        confidence: float | None,
        plan_id: str = "",
        step_id: str = "",
        approval_id: str = "",
    ) -> types_pb2.Decision:
        return self._run(
            self._client.request_tool_call(
                agent_id, tool, arguments, confidence, plan_id, step_id, approval_id
            )
        )

    def report_tool_result(
        self,
        decision_id: str,
        agent_id: str,
        outcome: str | int,
        output: Mapping[str, Any] | None = None,
        error_message: str = "",
        duration_seconds: float = 0.0,
        *,
        work_id: str = "",
    ) -> types_pb2.ToolResult:
        return self._run(
            self._client.report_tool_result(
                decision_id,
                agent_id,
                outcome,
                output,
                error_message,
                duration_seconds,
                work_id=work_id,
            )
        )

    def watch_events(
        self,
        after_seq: int = 0,
        *,
        plan_id: str = "",
        agent_id: str = "",
        kinds: Iterable[str | int] = (),
        timeout: float | None = None,
    ) -> Generator[observe_pb2.Event, None, None]:
        """A blocking generator of events (see the asyncio client); ``close()`` it (or
        leave the ``for`` loop) to end the stream. Never retried: resume with
        ``after_seq`` set to the last ``seq`` received."""
        return self._blocking(
            self._client.watch_events(
                after_seq, plan_id=plan_id, agent_id=agent_id, kinds=kinds, timeout=timeout
            )
        )

    def submit_plan(self, plan: Mapping[str, Any]) -> plans_pb2.Plan:
        return self._run(self._client.submit_plan(plan))

    def get_plan(self, plan_id: str) -> plans_pb2.Plan:
        return self._run(self._client.get_plan(plan_id))

    def list_plans(
        self, states: Iterable[str | int] = (), page_size: int = 20, page_token: str = ""
    ) -> control_plane_pb2.ListPlansResponse:
        return self._run(self._client.list_plans(states, page_size, page_token))

    def cancel_plan(self, plan_id: str, reason: str = "") -> plans_pb2.Plan:
        return self._run(self._client.cancel_plan(plan_id, reason))

    def pull_work(
        self, agent_id: str, *, timeout: float | None = None
    ) -> Generator[plans_pb2.WorkItem, None, None]:
        """A blocking generator of the agent's work items; ``close()`` it (or leave
        the ``for`` loop) to end the stream. As in the asyncio client, it is never
        retried: on ``InterlockError`` or when it ends, call it again."""
        return self._blocking(self._client.pull_work(agent_id, timeout=timeout))

    def _blocking(self, stream: AsyncGenerator[_T, None]) -> Generator[_T, None, None]:
        """Iterate an async generator of the client from this thread, one item a ``next()``."""
        try:
            while True:
                item = self._run(_next_or_none(stream))
                if item is None:
                    return
                yield item
        finally:
            try:
                self._run(stream.aclose())
            except RuntimeError:  # the client was closed meanwhile
                pass

    def report_work(
        self,
        item: plans_pb2.WorkItem,
        outcome: str | int,
        output: Mapping[str, Any] | None = None,
        error_message: str = "",
        duration_seconds: float = 0.0,
        *,
        agent_id: str = "",
    ) -> types_pb2.ToolResult:
        return self._run(
            self._client.report_work(
                item, outcome, output, error_message, duration_seconds, agent_id=agent_id
            )
        )

    def list_approvals(
        self,
        states: Iterable[str | int] = (),
        plan_id: str = "",
        agent_id: str = "",
        tool: str = "",
    ) -> list[observe_pb2.Approval]:
        return self._run(self._client.list_approvals(states, plan_id, agent_id, tool))

    def resolve_approval(
        self, approval_id: str, approve: bool, reason: str = ""
    ) -> observe_pb2.Approval:
        return self._run(self._client.resolve_approval(approval_id, approve, reason))

    def await_approval(self, approval_id: str, wait: float = 30.0) -> observe_pb2.Approval:
        return self._run(self._client.await_approval(approval_id, wait))

    def get_health(self) -> control_plane_pb2.GetHealthResponse:
        return self._run(self._client.get_health())

    def list_signals(
        self, kinds: Iterable[str | int] = (), tool: str = "", limit: int = 0
    ) -> control_plane_pb2.ListSignalsResponse:
        return self._run(self._client.list_signals(kinds, tool, limit))

    def policy_status(self) -> policy_service_pb2.GetPolicyStatusResponse:
        return self._run(self._client.policy_status())

    def reload_policies(
        self, *, accept_widening: bool = False, reason: str = ""
    ) -> policy_service_pb2.ReloadPoliciesResponse:
        return self._run(
            self._client.reload_policies(accept_widening=accept_widening, reason=reason)
        )

    def evaluate_policy(
        self,
        agent_id: str = "",
        tool: str = "",
        arguments: Mapping[str, Any] | None = None,
        confidence: float | None = None,
        *,
        live_in_flight: int = 0,
        raw_input: Mapping[str, Any] | None = None,
        policy_files: Mapping[str, str] | None = None,
    ) -> policy_service_pb2.EvaluatePolicyResponse:
        return self._run(
            self._client.evaluate_policy(
                agent_id,
                tool,
                arguments,
                confidence,
                live_in_flight=live_in_flight,
                raw_input=raw_input,
                policy_files=policy_files,
            )
        )

    def replay_policy(
        self,
        policy_files: Mapping[str, str],
        *,
        since: float = 0.0,
        until: float = 0.0,
        agent_id: str = "",
        tool: str = "",
        limit: int = 0,
        engine: str = "",
        samples: int = 0,
        skip_unrecorded: bool = False,
        timeout: float | None = None,
    ) -> Generator[policy_service_pb2.ReplayPolicyResponse, None, None]:
        """A blocking generator of the replay's messages (see the asyncio client):
        progress after each page, the report last."""
        return self._blocking(
            self._client.replay_policy(
                policy_files,
                since=since,
                until=until,
                agent_id=agent_id,
                tool=tool,
                limit=limit,
                engine=engine,
                samples=samples,
                skip_unrecorded=skip_unrecorded,
                timeout=timeout,
            )
        )

    def start_shadow(
        self, policy_files: Mapping[str, str], *, sample: float = 0.0
    ) -> policy_service_pb2.StartShadowResponse:
        return self._run(self._client.start_shadow(policy_files, sample=sample))

    def shadow_status(self) -> policy_service_pb2.GetShadowStatusResponse:
        return self._run(self._client.shadow_status())

    def promote_shadow(
        self, *, accept_widening: bool = False, reason: str = ""
    ) -> policy_service_pb2.PromoteShadowResponse:
        return self._run(
            self._client.promote_shadow(accept_widening=accept_widening, reason=reason)
        )

    def stop_shadow(self) -> policy_service_pb2.StopShadowResponse:
        return self._run(self._client.stop_shadow())

    def get_trust(self, agent_id: str = "", tool: str = "") -> list[trust_pb2.PairTrust]:
        return self._run(self._client.get_trust(agent_id, tool))

    def reset_trust(self, agent_id: str, tool: str, reason: str) -> trust_pb2.PairTrust:
        return self._run(self._client.reset_trust(agent_id, tool, reason))

    def create_grant(
        self,
        agent_id: str,
        tool: str,
        *,
        expires_at: float,
        max_uses: int = 0,
        arguments_equal: Mapping[str, Any] | None = None,
        argument_patterns: Mapping[str, str] | None = None,
        arguments_schema: Mapping[str, Any] | None = None,
        plan_id: str = "",
        reason: str = "",
        approval_id: str = "",
    ) -> grants_pb2.Grant:
        return self._run(
            self._client.create_grant(
                agent_id,
                tool,
                expires_at=expires_at,
                max_uses=max_uses,
                arguments_equal=arguments_equal,
                argument_patterns=argument_patterns,
                arguments_schema=arguments_schema,
                plan_id=plan_id,
                reason=reason,
                approval_id=approval_id,
            )
        )

    def list_grants(
        self, agent_id: str = "", tool: str = "", states: Iterable[str | int] = ()
    ) -> list[grants_pb2.Grant]:
        return self._run(self._client.list_grants(agent_id, tool, states))

    def revoke_grant(self, grant_id: str, reason: str = "") -> grants_pb2.Grant:
        return self._run(self._client.revoke_grant(grant_id, reason))


async def _next_or_none(stream: AsyncIterator[_T]) -> _T | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


__all__ = ["SyncInterlockClient"]
