"""``interlock run-plans FILE [--out DIR]``: the seed's batch run (see interlock.batch)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from interlock.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run_interruptibly

DESCRIPTION = """\
Run plans, the seed's way: start a server in this process (embedded engine,
loopback, insecure dev mode, a fresh data dir under DIR), a simulated worker
for every agent the plans name and an approver; submit every plan; wait until
each is finished; write seven files to DIR (orchestration_summary.json,
tool_execution_log.jsonl, execution_state_transitions.jsonl,
tool_conflicts.json, rollback_events.jsonl, learning_signals.jsonl,
system_health.json) and print a table per plan. FILE holds one plan object, a
JSON list of plans, or JSON Lines, in either plan format.

Workers simulate every tool: MOCK and DRY_RUN calls succeed. Without --live
the server runs dry-run-only, so nothing is decided LIVE; with --live the
policy decides LIVE as usual and the worker still only simulates it."""

EPILOG = """\
Approval rules: all, none, or comparisons of tool, risk, agent_id (== !=) and
confidence (== != < <= > >=) joined by 'and', e.g. 'confidence>0.8 and risk!=HIGH'.
Exit status: 0 every plan succeeded, 1 a plan did not (each is named, with
why), 2 usage error (a bad flag, rule or file)."""


def add_parser(commands: Any) -> None:
    """Register ``run-plans`` on the top-level subparsers."""
    p = commands.add_parser(
        "run-plans",
        help="run plans in a server of this process and write the seven files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="the plans: an object, a JSON list or JSON Lines")
    p.add_argument("--out", metavar="DIR", default="out", help="where the files go [default: out]")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the server's data dir [default: DIR/data, replaced on every run]",
    )
    p.add_argument(
        "--policy-dir",
        metavar="DIR",
        help="the policy folder [default: the server's policy_dir setting]",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML: server settings (docs/configuration.md) and the keys live, max_live, "
        "approve, fail, grants; flags win",
    )
    p.add_argument(
        "--live",
        action="store_true",
        default=None,
        help="let the policy decide LIVE (simulated all the same) [default: off]",
    )
    p.add_argument(
        "--dry-run-only",
        action="store_true",
        default=None,
        help="cap every call at DRY_RUN, also with --live",
    )
    p.add_argument(
        "--max-live",
        type=int,
        metavar="N",
        help="at most N LIVE executions in flight [default: the policy's]",
    )
    p.add_argument(
        "--live-confidence-floor",
        type=float,
        metavar="X",
        help="no LIVE call below this confidence [default: the policy's]",
    )
    p.add_argument(
        "--no-approval-required-for-high-risk",
        dest="approval_required_for_high_risk",
        action="store_false",
        default=None,
        help="HIGH-risk LIVE calls do not wait for an approval",
    )
    p.add_argument(
        "--no-rollback-on-failure",
        dest="rollback_on_failure",
        action="store_false",
        default=None,
        help="a failed plan's completed LIVE steps are not compensated",
    )
    p.add_argument(
        "--fail",
        action="append",
        metavar="TOOL[:N]",
        help="make TOOL fail (only its N-th call); repeatable",
    )
    p.add_argument(
        "--approve",
        metavar="all|none|RULE",
        help="answer approvals: all, none, or a rule like 'confidence>0.8' [default: none]",
    )
    p.add_argument(
        "--grants",
        metavar="FILE",
        help="YAML of agents to add for this run (agents/data.yaml shape)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="cancel plans not finished after SECONDS [default: wait]",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON, not tables")
    p.set_defaults(handler=cmd_run_plans, parser=p)


def cmd_run_plans(args: argparse.Namespace) -> int:
    from interlock.batch import BatchInputError, RuleError, format_table, parse_fail, parse_rule
    from interlock.batch.run import BatchOptions, run_plans_async
    from interlock.config import ConfigError
    from interlock.errors import InterlockError as ServerError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = BatchOptions(
            out_dir=Path(args.out),
            data_dir=Path(args.data_dir) if args.data_dir else None,
            config_file=args.config,
            live=args.live,
            dry_run_only=args.dry_run_only,
            max_live=args.max_live,
            live_confidence_floor=args.live_confidence_floor,
            approval_required_for_high_risk=args.approval_required_for_high_risk,
            rollback_on_failure=args.rollback_on_failure,
            fail=tuple(parse_fail(f) for f in args.fail) if args.fail else None,
            approve=parse_rule(args.approve) if args.approve is not None else None,
            approve_text=args.approve,
            grants_file=args.grants,
            policy_dir=args.policy_dir,
            timeout=args.timeout,
        )
        result = run_interruptibly(run_plans_async(args.file, options))
    except (BatchInputError, RuleError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServerError as exc:  # the server could not start (e.g. no policy folder)
        print(f"error: the batch run's server cannot start: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        import json

        print(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        print(format_table(result))
    for plan_id, why in result.failures:
        print(f"error: plan {plan_id} did not succeed: {why}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


__all__ = ["add_parser", "cmd_run_plans"]
