"""The ``interlock`` command: run the server, and talk to one.

    interlock serve [--config FILE] [--listen HOST:PORT] [--engine embedded|opa] ...
    interlock tools list
    interlock decide --agent A --tool T --confidence C [--args JSON | --args-file F]
    interlock report --decision ID --agent A --outcome succeeded|failed|timed_out
    interlock policy status | reload | eval
    interlock health
    interlock watch [--after SEQ] [--plan ID] [--agent ID] [--kind KIND ...] [--limit N]
    interlock plan submit FILE | get ID | list [--state STATE ...] [--limit N]
    interlock plan cancel ID [--reason TEXT]

Every command but ``serve`` is a client of a running server (``--server``,
default ``$INTERLOCK_SERVER`` or 127.0.0.1:50051), built on
:mod:`interlock_client`. Output is for people by default and JSON with
``--json``. Exit status: 0 on success, 1 when the call fails (``error: CODE:
message`` on stderr, then any field violations), 2 on a usage error.
"""

from interlock.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
