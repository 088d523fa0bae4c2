"""``interlock audit verify DIR``: check the audit files' hash chains, offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interlock.audit import verify_dir
from interlock.cli.common import EXIT_FAILED, EXIT_OK, UsageError


def cmd_audit_verify(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        raise UsageError(f"not a directory: {args.dir}")
    reports = verify_dir(directory)
    ok = all(r.ok for r in reports)
    if args.json:
        document = {"ok": ok, "directory": str(directory), "files": [r.as_dict() for r in reports]}
        print(json.dumps(document, indent=2))
    else:
        for r in reports:
            if r.problem is not None:
                print(f"FAIL  {r.file}: {r.problem}")
            elif not r.parts:
                print(f"ok    {r.file}: absent (no lines yet)")
            else:
                shown = ", ".join(r.parts)
                print(f"ok    {r.file}: {r.lines} line(s) in {shown}")
        print("all audit files verify" if ok else "audit verification FAILED")
    return EXIT_OK if ok else EXIT_FAILED


def add_audit_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    audit = commands.add_parser("audit", help="check the audit files")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="verify the JSONL audit files' hash chains (no server needed)",
        description="Check each JSONL audit file of DIR and its rotated parts, in order: every "
        "line parses, seq strictly increases, prev_hash links to the previous line and hash "
        "matches the line (see docs/audit.md). Reports the first broken line of each file. "
        "Exit status: 0 all verify, 1 a file does not, 2 usage error.",
    )
    verify.add_argument("dir", metavar="DIR", help="the server's data directory")
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(handler=cmd_audit_verify, parser=verify)


__all__ = ["add_audit_parser", "cmd_audit_verify"]
