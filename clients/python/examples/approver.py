#!/usr/bin/env python3
"""An example operator: approves or denies held calls from the terminal.

    python clients/python/examples/approver.py [--server HOST:PORT] [--token-file F]
        [--ca-file F [--cert-file F --key-file F]] [--plan ID] [--yes | --deny-all]
        [--count N]

It lists the approvals waiting now, then follows WatchEvents for new (and
escalated) requests. For each one it shows the call (tool, agent, confidence,
plan step, who asked, what it needs) and asks: ``y`` approves, ``n`` denies
(then a reason is asked), Enter skips. ``--yes`` approves everything and
``--deny-all`` denies everything without asking (for demos and tests); one
line per resolution goes to stdout as JSON. Who approves is whoever the token
or certificate says; the server refuses an operator without an approver role
and anyone approving their own call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from interlock_client import InterlockClient, InterlockError, credentials_from_files
from interlock_client.v1 import observe_pb2

log = logging.getLogger("operator")


def describe(a: observe_pb2.Approval) -> str:
    where = f"plan {a.plan_id} step {a.step_id}" if a.plan_id else "a single call"
    return (
        f"{a.approval_id}: {a.tool} by {a.agent_id} at confidence {a.confidence:g} ({where}), "
        f"asked by {a.requested_by}; needs {a.approvals_required} of "
        f"{' or '.join(a.approver_roles)}, has {len(a.approved_by)}"
    )


class Operator:
    def __init__(self, client: InterlockClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.done: set[str] = set()
        self.count = 0

    async def ask(self, a: observe_pb2.Approval) -> tuple[bool, str] | None:
        if self.args.yes:
            return True, "approved by the example operator (--yes)"
        if self.args.deny_all:
            return False, "denied by the example operator (--deny-all)"
        print(describe(a), file=sys.stderr)
        answer = (await asyncio.to_thread(input, "approve? [y/n, Enter skips] ")).strip().lower()
        if answer.startswith("y"):
            return True, ""
        if answer.startswith("n"):
            reason = await asyncio.to_thread(input, "reason: ")
            return False, reason.strip() or "denied by the operator"
        return None

    async def handle(self, a: observe_pb2.Approval) -> None:
        if a.approval_id in self.done or a.state != observe_pb2.APPROVAL_STATE_PENDING:
            return
        if self.args.plan and a.plan_id != self.args.plan:
            return
        choice = await self.ask(a)
        if choice is None:
            return
        self.done.add(a.approval_id)
        approve, reason = choice
        try:
            after = await self.client.resolve_approval(a.approval_id, approve, reason)
        except InterlockError as exc:
            log.warning("could not resolve %s: %s", a.approval_id, exc)
            return
        self.count += 1
        state = observe_pb2.ApprovalState.Name(after.state).removeprefix("APPROVAL_STATE_")
        print(
            json.dumps(
                {
                    "approval_id": a.approval_id,
                    "tool": a.tool,
                    "agent_id": a.agent_id,
                    "plan_id": a.plan_id,
                    "step_id": a.step_id,
                    "resolution": "APPROVE" if approve else "DENY",
                    "state": state,
                }
            ),
            flush=True,
        )

    def finished(self) -> bool:
        return bool(self.args.count) and self.count >= self.args.count

    async def run(self) -> None:
        for a in await self.client.list_approvals(plan_id=self.args.plan):
            await self.handle(a)
            if self.finished():
                return
        async for event in self.client.watch_events(kinds=["APPROVAL"], plan_id=self.args.plan):
            action = event.payload["action"] if "action" in event.payload else ""
            if action not in ("REQUESTED", "ESCALATED", "APPROVED_BY"):
                continue
            approval_id = event.payload["approval_id"]
            for a in await self.client.list_approvals(plan_id=event.plan_id):
                if a.approval_id == approval_id:
                    await self.handle(a)
            if self.finished():
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("INTERLOCK_SERVER", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="the Interlock server [default: $INTERLOCK_SERVER or 127.0.0.1:50051]",
    )
    parser.add_argument("--token-file", metavar="FILE", help="bearer token [or $INTERLOCK_TOKEN]")
    parser.add_argument("--ca-file", metavar="FILE", help="use TLS, trusting this CA (PEM)")
    parser.add_argument("--cert-file", metavar="FILE", help="mutual TLS: client certificate")
    parser.add_argument("--key-file", metavar="FILE", help="mutual TLS: its key")
    parser.add_argument("--as", dest="dev_principal", metavar="NAME", help="dev mode: act as NAME")
    parser.add_argument("--plan", default="", metavar="ID", help="only this plan's approvals")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--yes", action="store_true", help="approve everything, do not ask")
    choice.add_argument("--deny-all", action="store_true", help="deny everything, do not ask")
    parser.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N resolutions (0: never)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token, credentials = credentials_from_files(
        args.token_file, args.ca_file, args.cert_file, args.key_file
    )
    return asyncio.run(operate(args, token, credentials))


async def operate(args: argparse.Namespace, token: str | None, credentials: Any) -> int:
    async with InterlockClient(
        args.server, token=token, credentials=credentials, dev_principal=args.dev_principal
    ) as client:
        try:
            await Operator(client, args).run()
        except InterlockError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
