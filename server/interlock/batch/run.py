"""The batch run: a server, workers and an approver in this process, then the files.

:func:`run_plans_async` starts an :class:`~interlock.server.InterlockServer`
(the default in-process engine, loopback port 0, insecure development mode, no metrics
port, a fresh data dir), a simulated worker for every agent the plans name
and an approver, all talking to the server over gRPC with the Python client,
exactly as outside processes would. It submits the plans in file order
(so conflicts between them are found as they would be in production), waits
until each is finished, and writes the seven files (:mod:`interlock.batch.outputs`).

Safety: without ``live`` the server runs with ``dry_run_only`` on, so no
step is decided LIVE; the simulated worker also fails any LIVE item it gets
without ``live``. With ``live`` the policy decides LIVE as usual and the
worker still only simulates the tool (nothing outside is called).

Approvals: the approver watches APPROVAL events, asks its callable about
each pending approval and resolves it through ResolveApproval as
``batch-approver-1`` (and ``-2``, ... when the approval needs more distinct
approvers). The insecure development mode runs no authorization, so
these dev principals may approve calls of a plan the batch run (as
``batch-planner``) submitted. A callable answering None leaves the approval
to expire on its normal timer; the step then fails and the plan says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from interlock_client import InterlockClient, InterlockError

from interlock.batch.inputs import (
    BatchInputError,
    PlanDocument,
    load_plans,
    plan_document,
    policy_copy_with_grants,
    read_mapping,
)
from interlock.batch.outputs import BatchResult, PlanOutcome, write_outputs
from interlock.batch.rules import ApprovalRequest, Approver, FailSpec, parse_fail, parse_rule
from interlock.config import ServerConfig, load_config
from interlock.v1 import plans_pb2, types_pb2

log = logging.getLogger(__name__)

MARKER = ".interlock-batch-run"
"""Marks a data dir a batch run made: the next run into the same out dir may replace it."""
PLANNER = "batch-planner"
APPROVER = "batch-approver"
POLL_SECONDS = 0.05
CALL_TIMEOUT = 30.0
BATCH_KEYS = ("live", "max_live", "approve", "fail", "grants")
"""Config file keys of the batch run itself; every other key is a server setting."""
TERMINAL = frozenset(
    {
        plans_pb2.PLAN_STATE_SUCCEEDED,
        plans_pb2.PLAN_STATE_FAILED,
        plans_pb2.PLAN_STATE_FAILED_PARTIAL,
        plans_pb2.PLAN_STATE_CANCELLED,
        plans_pb2.PLAN_STATE_ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch; None means "from the config file, else the default"."""

    out_dir: Path
    data_dir: Path | None = None
    """Default: ``out_dir/data``, fresh each run (a previous batch run's is replaced)."""
    config_file: str | None = None
    """A YAML file of server settings (docs/configuration.md) and the batch keys
    live, max_live, approve, fail, grants."""
    live: bool | None = None
    """Let the policy decide LIVE (the worker still only simulates). Default off."""
    dry_run_only: bool | None = None
    max_live: int | None = None
    live_confidence_floor: float | None = None
    approval_required_for_high_risk: bool | None = None
    rollback_on_failure: bool | None = None
    fail: tuple[FailSpec, ...] | None = None
    approve: Approver | None = None
    """Default: deny every approval (the rule ``none``)."""
    approve_text: str | None = None
    """How ``approve`` was written, for the summary."""
    grants_file: str | None = None
    policy_dir: str | None = None
    """The policy folder [default: the server's setting, from the config file or environment]."""
    timeout: float | None = None
    """Give up on plans not finished after this many seconds (they are cancelled)."""


def _from_file(options: BatchOptions) -> tuple[BatchOptions, dict[str, Any]]:
    """Fill the options the caller left None from the config file; return the
    file's server settings apart."""
    if not options.config_file:
        return options, {}
    doc = read_mapping(options.config_file, "config file")
    batch = {k: doc.pop(k) for k in BATCH_KEYS if k in doc}
    if "max_live" in batch and "max_concurrent_live" not in doc:
        doc["max_concurrent_live"] = batch["max_live"]
    changes: dict[str, Any] = {}
    if options.live is None and "live" in batch:
        changes["live"] = bool(batch["live"])
    if options.approve is None and "approve" in batch:
        changes["approve"] = parse_rule(str(batch["approve"]))
        changes["approve_text"] = str(batch["approve"])
    if options.fail is None and "fail" in batch:
        raw = batch["fail"]
        specs = raw if isinstance(raw, list) else [raw]
        changes["fail"] = tuple(parse_fail(str(s)) for s in specs)
    if options.grants_file is None and batch.get("grants"):
        changes["grants_file"] = str(batch["grants"])
    return replace(options, **changes), doc


def _fresh_data_dir(options: BatchOptions) -> Path:
    if options.data_dir is not None:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        return options.data_dir
    data = options.out_dir / "data"
    if data.exists():
        if not (data / MARKER).exists():
            raise BatchInputError(
                f"{data} exists and was not made by a batch run; pass another out dir or a data dir"
            )
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / MARKER).write_text("made by interlock run-plans; replaced by the next run\n")
    return data


def server_config(
    options: BatchOptions, data_dir: Path, file_settings: dict[str, Any]
) -> ServerConfig:
    """The batch server's configuration: the file's settings, the environment, then
    what a batch run always sets (loopback port 0, dev mode, its data dir)."""
    config_path: Path | None = None
    if file_settings:
        config_path = data_dir / "server-config.yaml"
        config_path.write_text(yaml.safe_dump(file_settings, sort_keys=True))
    overrides: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "metrics_listen": "",
        "data_dir": str(data_dir),
        "policy_dir": options.policy_dir,
        "policy_watch_interval_seconds": 0,
        "health_interval_seconds": 0,
        "insecure": True,
        "principals_file": "",
        "max_concurrent_live": options.max_live,
        "live_confidence_floor": options.live_confidence_floor,
        "approval_required_for_high_risk": options.approval_required_for_high_risk,
        "rollback_on_failure": options.rollback_on_failure,
        "dry_run_only": options.dry_run_only if options.live else True,
    }
    env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_CONFIG"}
    base = load_config(file=config_path, env=env, overrides=overrides)
    if options.grants_file:
        policies = policy_copy_with_grants(
            base.policy_dir, options.grants_file, data_dir / "policies"
        )
        base = replace(base, policy_dir=str(policies))
    if not options.live and not base.dry_run_only:  # a config file cannot turn it off
        base = replace(base, dry_run_only=True)
    return base


def _mode(value: int) -> str:
    return str(types_pb2.ExecutionMode.Name(value)).removeprefix("EXECUTION_MODE_")


@dataclass
class _Run:
    target: str
    options: BatchOptions
    risks: dict[str, str]
    calls: Counter[str] = field(default_factory=Counter)
    seen_work: set[str] = field(default_factory=set)
    answered: dict[str, str] = field(default_factory=dict)
    """approval id -> approved | denied | unanswered."""
    stopping: bool = False

    # Simulated workers -------------------------------------------------------------

    async def worker(self, agent: str) -> None:
        async with InterlockClient(self.target, dev_principal=agent, timeout=CALL_TIMEOUT) as c:
            while not self.stopping:
                try:
                    async for item in c.pull_work(agent):
                        await self.work(c, item)
                except InterlockError as exc:
                    if self.stopping:
                        return
                    log.warning("batch worker %s: %s; reconnecting", agent, exc)
                await asyncio.sleep(0.1)

    async def work(self, client: InterlockClient, item: plans_pb2.WorkItem) -> None:
        if item.work_id not in self.seen_work:
            self.seen_work.add(item.work_id)
            self.calls[item.tool] += 1
        count = self.calls[item.tool]
        mode = _mode(item.mode)
        outcome, error = "SUCCEEDED", ""
        failing = next((f for f in self.options.fail or () if f.fails(item.tool, count)), None)
        if mode == "LIVE" and not self.options.live:
            outcome, error = "FAILED", "LIVE is off in this batch run (run it with --live)"
        elif failing is not None:
            outcome = "FAILED"
            error = f"simulated failure (--fail {failing}): call {count} of {item.tool}"
        output = {"simulated": True, "mode": mode, "call": count}
        try:
            await client.report_work(item, outcome, output, error, 0.0)
        except InterlockError as exc:  # cancelled or timed out meanwhile: the plan says so
            log.info("batch worker: report of %s refused: %s", item.work_id, exc)

    # The approver ------------------------------------------------------------------

    async def approver(self, after_seq: int) -> None:
        async with InterlockClient(self.target, dev_principal=APPROVER, timeout=CALL_TIMEOUT) as c:
            async for _event in c.watch_events(after_seq, kinds=["APPROVAL"]):
                for approval in await c.list_approvals(["PENDING"]):
                    if approval.approval_id not in self.answered:
                        await self.answer(c, approval)

    async def answer(self, client: InterlockClient, approval: Any) -> None:
        arguments: dict[str, Any] = {}
        if approval.plan_id:
            plan = await client.get_plan(approval.plan_id)
            for step in plan.steps:
                if step.step_id == approval.step_id:
                    arguments = json_format.MessageToDict(step.arguments)
        request = ApprovalRequest(
            approval_id=approval.approval_id,
            tool=approval.tool,
            risk=self.risks.get(approval.tool, ""),
            confidence=approval.confidence,
            agent_id=approval.agent_id,
            arguments=arguments,
            plan_id=approval.plan_id,
            step_id=approval.step_id,
            approvals_required=approval.approvals_required,
        )
        rule = self.options.approve_text or "none"
        try:
            verdict = self.options.approve(request) if self.options.approve else False
        except Exception as exc:  # a broken callable denies: fail closed
            log.warning("batch approver: the approval callable raised %r; denying", exc)
            verdict, rule = False, f"the approval callable raised {type(exc).__name__}"
        if verdict is None:
            self.answered[approval.approval_id] = "unanswered"
            return
        self.answered[approval.approval_id] = "approved" if verdict else "denied"
        if not verdict:
            await client.resolve_approval(
                approval.approval_id, False, f"denied by the batch run's approval rule ({rule})"
            )
            return
        needed = max(1, approval.approvals_required - len(approval.approved_by))
        for i in range(needed):
            async with InterlockClient(
                self.target, dev_principal=f"{APPROVER}-{i + 1}", timeout=CALL_TIMEOUT
            ) as one:
                await one.resolve_approval(
                    approval.approval_id, True, f"approved by the batch run's rule ({rule})"
                )


async def _wait(client: InterlockClient, plan_ids: list[str], limit: float | None) -> None:
    """Until every plan is finished; after ``limit`` seconds the rest are cancelled."""
    deadline = None if limit is None else time.monotonic() + limit
    pending = list(plan_ids)
    while pending:
        still = []
        for plan_id in pending:
            if (await client.get_plan(plan_id)).state not in TERMINAL:
                still.append(plan_id)
        pending = still
        if pending and deadline is not None and time.monotonic() > deadline:
            for plan_id in pending:
                with contextlib.suppress(InterlockError):
                    await client.cancel_plan(
                        plan_id, f"the batch run's timeout of {limit:g}s passed"
                    )
            return
        if pending:
            await asyncio.sleep(POLL_SECONDS)


async def run_plans_async(
    plans: str | os.PathLike[str] | Sequence[Mapping[str, Any]], options: BatchOptions
) -> BatchResult:
    """Run every plan to a terminal state and write the seven files; see the module docstring."""
    from interlock.server import InterlockServer

    if isinstance(plans, str | os.PathLike):
        documents = load_plans(Path(plans))
    else:
        documents = [plan_document(doc, f"plans[{i}]") for i, doc in enumerate(plans)]
    options, file_settings = _from_file(options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = _fresh_data_dir(options)
    config = server_config(options, data_dir, file_settings)
    started_at = time.time()
    server = InterlockServer(config)
    await server.start()
    tasks: list[asyncio.Task[None]] = []
    run: _Run | None = None
    try:
        start_seq = await server.journal.events.highest()
        target = f"127.0.0.1:{server.port}"
        async with InterlockClient(target, dev_principal=PLANNER, timeout=CALL_TIMEOUT) as client:
            tools = await client.list_tools()
            risks = {
                t.name: str(types_pb2.RiskLevel.Name(t.risk)).removeprefix("RISK_LEVEL_")
                for t in tools.tools
            }
            known = set(server.policies.active.catalog.agents)
            run = _Run(target, options, risks)
            agents = sorted({a for d in documents for a in d.agents} & known)
            tasks = [asyncio.create_task(run.worker(a), name=f"batch-worker-{a}") for a in agents]
            tasks.append(asyncio.create_task(run.approver(start_seq), name="batch-approver"))
            outcomes = await _submit_all(client, documents)
            await _wait(client, [o.plan_id for o in outcomes if o.accepted], options.timeout)
            for o in outcomes:
                if o.accepted:
                    o.plan = await client.get_plan(o.plan_id)
        run.stopping = True
        await server.signals.drain()
        health = await server.health_monitor.write()
    finally:
        if run is not None:
            run.stopping = True
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, InterlockError):
                await task
        await server.stop(grace=1.0)
    return write_outputs(
        options.out_dir,
        data_dir,
        start_seq,
        outcomes,
        health,
        answered=dict(run.answered),
        settings=_settings(options, config),
        started_at=started_at,
    )


async def _submit_all(client: InterlockClient, documents: list[PlanDocument]) -> list[PlanOutcome]:
    out: list[PlanOutcome] = []
    for d in documents:
        try:
            plan = await client.submit_plan(d.doc)
        except (InterlockError, ValueError, TypeError) as exc:
            out.append(PlanOutcome.refused(d, exc))
            continue
        out.append(PlanOutcome(plan_id=plan.plan_id, where=d.where, plan=plan))
    return out


def _settings(options: BatchOptions, config: ServerConfig) -> dict[str, Any]:
    return {
        "live": bool(options.live),
        "dry_run_only": config.dry_run_only,
        "max_live": config.max_concurrent_live,
        "live_confidence_floor": config.live_confidence_floor,
        "approval_required_for_high_risk": config.approval_required_for_high_risk,
        "rollback_on_failure": config.rollback_on_failure,
        "approve": options.approve_text
        or ("a callable" if options.approve is not None else "none"),
        "fail": [str(f) for f in options.fail or ()],
        "grants": options.grants_file or "",
        "policy_dir": config.policy_dir,
        "data_dir": config.data_dir,
    }


def run_plans(
    plans: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str] = "out",
    *,
    approve: Approver | str | None = None,
    live: bool | None = None,
    fail: Sequence[str] = (),
    **settings: Any,
) -> BatchResult:
    """Run plans in a server of this process and write the seven files to ``out_dir``.

    ``plans``: a file (an object, a JSON list or JSON Lines) or a list of plan
    documents. ``approve``: a callable ``(approval) -> bool | None`` (the
    approval has tool, risk, confidence, agent_id, arguments), or a rule
    string (``"all"``, ``"none"``, ``"confidence>0.8"``); default none.
    ``fail``: specs like ``"form_fill:2"``. Other keywords are the fields of
    :class:`BatchOptions` (``dry_run_only``, ``max_live``, ``grants_file``, ...).
    Blocks; from async code use :func:`run_plans_async`.
    """
    approve_text = settings.pop("approve_text", None)
    if isinstance(approve, str):
        approve_text = approve
        approve = parse_rule(approve)
    options = BatchOptions(
        out_dir=Path(out_dir),
        approve=approve,
        approve_text=approve_text,
        live=live,
        fail=tuple(parse_fail(f) for f in fail) or None,
        **settings,
    )
    return asyncio.run(run_plans_async(plans, options))


__all__ = ["BatchOptions", "run_plans", "run_plans_async", "server_config"]
