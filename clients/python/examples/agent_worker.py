#!/usr/bin/env python3
"""An example agent worker: runs the plan steps Interlock hands to one agent.

    python clients/python/examples/agent_worker.py --agent agent1 [--server HOST:PORT]
        [--token-file F] [--ca-file F [--cert-file F --key-file F]] [--fail TOOL ...]
        [--max-items N]

It pulls the agent's work items (``PullWork``), "runs" each tool in the mode
Interlock granted, and reports the outcome (``ReportToolResult`` with the work id):

    MOCK, DRY_RUN  validate only: no side effects
    LIVE           a simulated side effect: says what it would do, returns a fake receipt
    compensation   an item that undoes an earlier step during a rollback

Tools named with --fail are reported FAILED, to see a plan fail and roll back.
Each item handled is one JSON line on stdout (work_id, plan_id, step_id, tool,
mode, compensation, outcome), the same as the Go and TypeScript workers print;
logs go to stderr. --max-items N stops after N items.
When the work stream drops (the server restarts, the network fails) the worker
reconnects with an exponential backoff. Ctrl-C or SIGTERM stops it, after the
item in hand is finished and reported: a LIVE item dropped mid-run is never
offered again, Interlock marks it AMBIGUOUS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from interlock_client import InterlockClient, InterlockError, credentials_from_files
from interlock_client.v1 import plans_pb2, types_pb2

log = logging.getLogger("agent_worker")

MIN_BACKOFF, MAX_BACKOFF = 0.5, 10.0  # seconds between reconnection attempts


class ToolFailed(Exception):
    """The tool ran and failed: the item is reported FAILED with this message."""


def run_tool(item: plans_pb2.WorkItem, fail: set[str]) -> dict[str, Any]:
    """Run one work item (simulated) and return its output."""
    mode = types_pb2.ExecutionMode.Name(item.mode).removeprefix("EXECUTION_MODE_")
    arguments = json_format.MessageToDict(item.arguments)
    call = f"{item.tool}({arguments}) for {item.plan_id}/{item.step_id}"
    if item.tool in fail:
        raise ToolFailed(f"simulated failure of {item.tool} (--fail)")
    if item.compensation:
        receipt = f"undo_{uuid.uuid4().hex[:12]}"
        log.info("UNDO %s: reverting the earlier step (simulated), receipt %s", call, receipt)
        return {"undone": item.step_id, "receipt": receipt, "simulated": True}
    if mode == "LIVE":
        receipt = f"rcpt_{uuid.uuid4().hex[:12]}"
        log.info("LIVE %s: performing it now (simulated), receipt %s", call, receipt)
        return {"receipt": receipt, "simulated": True}
    # MOCK or DRY_RUN: check what can be checked, change nothing.
    log.info("%s %s: arguments checked, nothing changed", mode, call)
    return {"mode": mode, "validated": True}


class Worker:
    def __init__(
        self, client: InterlockClient, agent: str, fail: set[str], max_items: int = 0
    ) -> None:
        self.client = client
        self.agent = agent
        self.fail = fail
        self.max_items = max_items
        self.handled = 0
        self.busy = False  # an item is being run and reported
        self.stopping = False

    def stop(self, task: asyncio.Task[None]) -> None:
        """On Ctrl-C or SIGTERM: stop now if idle, else after the item in hand."""
        log.info("stopping")
        self.stopping = True
        if not self.busy:
            task.cancel()

    async def run(self) -> None:
        """Pull work until stopped, reconnecting with a backoff when the stream drops."""
        backoff = MIN_BACKOFF
        while not self.stopping:
            log.info("pulling work for %s from %s", self.agent, self.client.target)
            try:
                async with contextlib.aclosing(self.client.pull_work(self.agent)) as items:
                    async for item in items:
                        backoff = MIN_BACKOFF  # connected: start the next backoff over
                        await self.handle(item)
                        if self.stopping:
                            return
                log.warning("the server ended the work stream")
            except InterlockError as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE:
                    raise  # e.g. NOT_FOUND: an agent the policy does not know
                if exc.reason == "SERVER_STOPPING":
                    log.warning("the server ended the work stream: it is stopping")
                else:
                    log.warning("work stream unavailable: %s", exc.message)
            log.info("reconnecting in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def handle(self, item: plans_pb2.WorkItem) -> None:
        self.busy = True
        try:
            started = time.monotonic()
            try:
                output, outcome, error = run_tool(item, self.fail), "SUCCEEDED", ""
            except ToolFailed as exc:
                output, outcome, error = {}, "FAILED", str(exc)
            elapsed = time.monotonic() - started
            try:
                await self.client.report_work(item, outcome, output, error, elapsed)
                log.info("reported %s %s: %s %s", item.tool, item.work_id, outcome, error)
            except InterlockError as exc:
                # NOT_FOUND: the plan was cancelled or the step timed out meanwhile.
                log.warning("could not report %s %s: %s", item.tool, item.work_id, exc)
            line = {
                "work_id": item.work_id,
                "plan_id": item.plan_id,
                "step_id": item.step_id,
                "tool": item.tool,
                "mode": types_pb2.ExecutionMode.Name(item.mode).removeprefix("EXECUTION_MODE_"),
                "compensation": item.compensation,
                "outcome": outcome,
            }
            print(json.dumps(line), flush=True)
            self.handled += 1
            if self.max_items and self.handled >= self.max_items:
                self.stopping = True
        finally:
            self.busy = False


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", required=True, help="the agent this worker runs for")
    parser.add_argument(
        "--server",
        "--target",
        default=os.environ.get("INTERLOCK_SERVER", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="the Interlock server [default: $INTERLOCK_SERVER or 127.0.0.1:50051]",
    )
    parser.add_argument(
        "--fail",
        nargs="+",
        action="extend",
        default=[],
        metavar="TOOL",
        help="report these tools FAILED",
    )
    parser.add_argument("--token-file", metavar="FILE", help="bearer token [or $INTERLOCK_TOKEN]")
    parser.add_argument("--ca-file", metavar="FILE", help="use TLS, trusting this CA (PEM)")
    parser.add_argument("--cert-file", metavar="FILE", help="mutual TLS: client certificate")
    parser.add_argument("--key-file", metavar="FILE", help="mutual TLS: its key")
    parser.add_argument(
        "--max-items", type=int, default=0, metavar="N", help="stop after N items (0: never)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    token, credentials = await asyncio.to_thread(
        credentials_from_files, args.token_file, args.ca_file, args.cert_file, args.key_file
    )

    async with InterlockClient(args.server, token=token, credentials=credentials) as client:
        worker = Worker(client, args.agent, set(args.fail), args.max_items)
        task = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop, task)
        try:
            await task
        except asyncio.CancelledError:
            pass  # stopped by a signal while idle
        except InterlockError as exc:
            log.error("giving up: %s", exc)
            return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
