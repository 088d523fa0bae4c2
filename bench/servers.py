"""Server launchers for the decision benchmark, one server per process.

    python bench/servers.py echo --loop uvloop --reply-bytes 400
    python bench/servers.py interlock --loop uvloop --data-dir DIR --policy-dir DIR \
        --engine embedded|opa [--opa-url URL] [--no-fsync] [--principals-file FILE] \
        [--max-streams N] [--embedded-api native|regopy]
    python bench/servers.py fanout --loop uvloop --message-bytes 300
    python bench/servers.py health --loop uvloop

Each prints ``PORT <n>`` on stdout once it serves, then runs until SIGTERM or
SIGINT, when it stops gracefully. Loopback only (port 0 picks a free port).
``--profile FILE`` writes a cProfile of the event-loop thread (pstats) at exit;
the other threads (regopy evaluation, the store writer) are not in it.

The echo server is the baseline: a bare ``grpc.aio`` server with one generic
unary method whose request and response are raw bytes (identity
serializers), no interceptors, no protobuf. It answers every request with a
fixed reply of ``--reply-bytes`` bytes (0: the request itself), so its
payloads can be sized like Interlock's request and response.

The fanout server is the baseline of the WatchEvents fan-out benchmark
(bench/bench_plans.py): a bare ``grpc.aio`` server with a server-streaming
method (``/bench.Fanout/Subscribe``) and a unary one (``/bench.Fanout/Publish``).
Each Publish stamps one message (a serialized ``WatchEventsResponse`` padded
to ``--message-bytes``, its ``seq`` and ``time`` set at that moment), puts the
same bytes on every open stream's queue and returns; each stream writes what
its queue holds. No store, no filter, no per-watcher conversion: what
fanning one message out to N Python gRPC streams costs on this machine.

The health server is the baseline of the ghz benchmark (bench/bench_ghz.py):
a bare ``grpc.aio`` server with grpcio-health-checking's standard
``grpc.health.v1.Health`` servicer (status SERVING), nothing else: no
interceptors, no store. Its Check is the same RPC as Interlock's own health
Check, so the two differ only by what Interlock's server adds to every call.

Interlock runs in the development mode (no authentication, no authorization)
unless ``--principals-file`` is given: then every call needs a bearer token
from that file and is authorized by the policy (still plaintext on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable


def install_loop(name: str) -> str:
    """Install the chosen event loop policy; return the name of the loop used."""
    if name == "uvloop":
        import uvloop

        uvloop.install()
    return name


async def _serve(start: Callable[[], Awaitable[int]], stop: Callable[[], Awaitable[None]]) -> None:
    port = await start()
    print(f"PORT {port}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await stop()


async def run_echo(reply_bytes: int) -> None:
    import grpc

    reply = b"\x00" * reply_bytes if reply_bytes > 0 else None

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply if reply is not None else request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))

    async def start() -> int:
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return int(port)

    async def stop() -> None:
        await server.stop(1.0)

    await _serve(start, stop)


async def run_fanout(message_bytes: int) -> None:
    import grpc
    from google.protobuf import timestamp_pb2
    from interlock.v1 import control_plane_pb2, observe_pb2

    template = control_plane_pb2.WatchEventsResponse(
        event=observe_pb2.Event(kind=observe_pb2.EVENT_KIND_DECISION)
    )
    template.event.seq = 2**40  # a typical varint width; the real seq is set per message
    template.event.time.GetCurrentTime()
    pad = max(0, message_bytes - template.ByteSize() - 2)
    template.event.message = "x" * pad
    queues: set[asyncio.Queue[bytes]] = set()
    seq = 0

    async def subscribe(request: bytes, context: grpc.aio.ServicerContext) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(queue)
        try:
            while True:
                await context.write(await queue.get())
        finally:
            queues.discard(queue)

    async def publish(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        nonlocal seq
        seq += 1
        template.event.seq = seq
        stamp = timestamp_pb2.Timestamp()
        stamp.GetCurrentTime()
        template.event.time.CopyFrom(stamp)
        message = template.SerializeToString()
        for queue in queues:
            queue.put_nowait(message)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "bench.Fanout",
        {
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                subscribe, request_deserializer=None, response_serializer=None
            ),
            "Publish": grpc.unary_unary_rpc_method_handler(
                publish, request_deserializer=None, response_serializer=None
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))

    async def start() -> int:
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return int(port)

    async def stop() -> None:
        await server.stop(1.0)

    await _serve(start, stop)


async def run_health() -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1._async import HealthServicer

    servicer = HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

    async def start() -> int:
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return int(port)

    async def stop() -> None:
        await server.stop(1.0)

    await _serve(start, stop)


async def run_interlock(args: argparse.Namespace) -> None:
    import logging

    from interlock.config import load_config
    from interlock.server import InterlockServer

    overrides = {
        "listen": "127.0.0.1:0",
        "metrics_listen": "",
        "data_dir": args.data_dir,
        "policy_dir": args.policy_dir,
        "engine": args.engine,
        "policy_watch_interval_seconds": 0,
        "log_level": "WARNING",
        # One client floods on purpose: the per-principal rate limit would cap it.
        "rate_limit_per_second": 0,
    }
    if args.engine == "opa":
        overrides["opa_url"] = args.opa_url
        overrides["opa_bundle_listen"] = args.opa_bundle_listen  # OPA's bundle service
        overrides["opa_bin"] = args.opa_bin
    if args.no_fsync:
        overrides["fsync"] = False
    if args.max_streams:
        # The fan-out benchmark opens ~1,000 WatchEvents streams as one principal.
        overrides["max_streams_per_principal"] = args.max_streams
    if args.principals_file:
        # Tokens on loopback: authentication and authorization on, no TLS.
        overrides["principals_file"] = args.principals_file
    # The embedded engine's call path: rego-cpp's C API (embedded_native), or
    # regopy's public API (the default): for before/after figures in one run.
    overrides["embedded_native"] = args.embedded_api == "native"
    config = load_config(env={}, overrides=overrides)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    server = InterlockServer(config)

    async def stop() -> None:
        await server.stop(1.0)

    await _serve(server.start, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="target", required=True)
    for name in ("echo", "interlock", "fanout", "health"):
        p = sub.add_parser(name)
        p.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
        p.add_argument(
            "--profile", metavar="FILE", help="cProfile the event-loop thread into FILE (pstats)"
        )
    echo = sub.choices["echo"]
    echo.add_argument("--reply-bytes", type=int, default=0)
    sub.choices["fanout"].add_argument("--message-bytes", type=int, default=300)
    il = sub.choices["interlock"]
    il.add_argument("--data-dir", required=True)
    il.add_argument("--policy-dir", required=True)
    il.add_argument("--engine", choices=("embedded", "opa"), default="embedded")
    il.add_argument("--opa-url", default="http://127.0.0.1:8181")
    il.add_argument("--opa-bundle-listen", default="127.0.0.1:0")
    il.add_argument("--opa-bin", default="opa")
    il.add_argument("--no-fsync", action="store_true")
    il.add_argument(
        "--principals-file", default="", help="bearer tokens -> principals (default: dev mode)"
    )
    il.add_argument(
        "--max-streams", type=int, default=0, help="max_streams_per_principal (default: config's)"
    )
    il.add_argument(
        "--embedded-api",
        choices=("native", "regopy"),
        default="native",
        help="the embedded engine's call path: rego-cpp's C API (the server's) or regopy's API",
    )
    args = parser.parse_args(argv)

    install_loop(args.loop)
    if args.target == "echo":
        coro = run_echo(args.reply_bytes)
    elif args.target == "fanout":
        coro = run_fanout(args.message_bytes)
    elif args.target == "health":
        coro = run_health()
    else:
        coro = run_interlock(args)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(coro)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
