"""``interlock audit verify DIR``: check the audit files' hash chains, offline;
``interlock audit export``: the merged trail of every replica, from the journal."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from interlock.audit import GENESIS, record_hash, verify_dir
from interlock.cli.common import EXIT_FAILED, EXIT_OK, UsageError, run_interruptibly


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


EXPORT_PAGE = 5000


async def _export(store: str, data_dir: Path, out: Path) -> dict[str, dict[str, int]]:
    """Write each audit file's lines of every replica, in seq order, to ``out``;
    check each replica's chain on the way. Returns lines by file and replica."""
    from interlock.audit import AuditLog
    from interlock.journal import open_journal

    journal = open_journal(store, data_dir, AuditLog(out, fsync=False), fsync=False)
    await journal.backend.open()  # reads only: no writer, no migration
    counts: dict[str, dict[str, int]] = {}
    try:
        for name in await journal.audit_lines.files():
            heads: dict[str, str] = {}
            by_replica = counts.setdefault(name, {})
            after, first = 0, True
            while True:
                rows = await journal.audit_lines.page(name, after, EXPORT_PAGE)
                lines = []
                for row in rows:
                    replica, line = str(row["replica"]), str(row["line"])
                    record = json.loads(line)
                    prev = heads.get(replica, GENESIS)
                    if record.get("prev_hash") != prev or record.get("hash") != record_hash(record):
                        raise ChainBroken(
                            f"{name}: the line of seq {row['seq']} of replica "
                            f"{replica or '(unnamed)'} does not continue its chain"
                        )
                    heads[replica] = record["hash"]
                    by_replica[replica] = by_replica.get(replica, 0) + 1
                    lines.append(line)
                await asyncio.to_thread(_write_lines, out / name, lines, first)
                first = False
                if len(rows) < EXPORT_PAGE:
                    break
                after = int(rows[-1]["seq"])
    finally:
        await journal.backend.close()
    return counts


class ChainBroken(Exception):
    pass


def _write_lines(path: Path, lines: list[str], truncate: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w" if truncate else "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def cmd_audit_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    data_dir = Path(args.data_dir)
    if not args.store and not (data_dir / "interlock.db").is_file():
        raise UsageError(
            f"no store: give --store URL, or --data-dir holding interlock.db ({data_dir})"
        )
    try:
        counts = run_interruptibly(_export(args.store, data_dir, out))
    except ChainBroken as exc:
        print(f"FAIL  {exc}")
        return EXIT_FAILED
    except Exception as exc:
        print(f"error: cannot export: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"ok": True, "out": str(out), "files": counts}, indent=2))
    else:
        for name, by_replica in sorted(counts.items()):
            parts = ", ".join(f"{r or '(unnamed)'} {n}" for r, n in sorted(by_replica.items()))
            print(f"ok    {name}: {sum(by_replica.values())} line(s) ({parts})")
        print(f"the merged trail is in {out}; every replica's chain verifies")
    return EXIT_OK


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
    export = audit_commands.add_parser(
        "export",
        help="write the merged audit trail of every replica from the store",
        description="Read every audit line the store holds (each replica's, as committed) and "
        "write, per audit file, all replicas' lines in seq order to OUT, checking that each "
        "replica's lines form its hash chain. Exit status: 0 written and verified, 1 a chain "
        "is broken or the store cannot be read, 2 usage error.",
    )
    export.add_argument(
        "--store",
        default="",
        metavar="URL",
        help="postgresql://... (default: SQLite in --data-dir)",
    )
    export.add_argument(
        "--data-dir", default="var/interlock", metavar="DIR", help="where interlock.db is (SQLite)"
    )
    export.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    export.add_argument("--json", action="store_true", help="print JSON instead of text")
    export.set_defaults(handler=cmd_audit_export, parser=export)


__all__ = ["add_audit_parser", "cmd_audit_export", "cmd_audit_verify"]
