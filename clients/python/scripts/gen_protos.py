"""Generate the Python gRPC stubs into ``interlock_client/v1`` (``make proto``).

protoc names a generated module after its .proto file, so the stubs it writes
import each other as ``interlock.v1``; they ship in the interlock-client
distribution as ``interlock_client.v1`` instead, so a client never imports the
server's ``interlock`` package. This script runs ``grpc_tools.protoc`` into a
scratch folder, rewrites those imports (and the module names protobuf records)
to ``interlock_client.v1``, and writes the result under ``OUT``. Nothing else
changes: proto package names, service paths and the descriptors keep
``interlock.v1``. ``make proto-check`` generates into a temporary ``OUT`` and
compares.

Usage: python gen_protos.py [--protos DIR] OUT
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PACKAGE = "interlock_client.v1"
_REWRITES = (
    # Imports between the stubs (.py and .pyi).
    (re.compile(r"^from interlock\.v1 import ", re.M), f"from {PACKAGE} import "),
    # The module name protobuf gives the message classes.
    (re.compile(r"'interlock\.v1\.(\w+_pb2)'"), rf"'{PACKAGE}.\1'"),
    # The version-mismatch message names the file.
    (re.compile(r"generated code in interlock/v1/"), "generated code in interlock_client/v1/"),
)


def generate(protos: Path, out: Path) -> list[Path]:
    """Write the stubs of every protos/interlock/v1/*.proto to out/interlock_client/v1."""
    sources = sorted(
        str(p.relative_to(protos)) for p in (protos / "interlock" / "v1").glob("*.proto")
    )
    if not sources:
        raise SystemExit(f"gen_protos: no .proto files under {protos / 'interlock' / 'v1'}")
    target = out / "interlock_client" / "v1"
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "grpc_tools.protoc",
            f"-I{protos}",
            f"-I{resources.files('grpc_tools') / '_proto'}",  # the well-known types
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("gen_protos: protoc failed")
        generated = sorted((Path(scratch) / "interlock" / "v1").iterdir())
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        written = []
        for path in generated:
            text = path.read_text()
            for pattern, replacement in _REWRITES:
                text = pattern.sub(replacement, text)
            (target / path.name).write_text(text)
            written.append(target / path.name)
    init = target / "__init__.py"
    init.write_text(
        '"""Generated gRPC stubs of the interlock.v1 API (make proto). Do not edit."""\n'
    )
    return [*written, init]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protos", type=Path, default=Path("protos"))
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    files = generate(args.protos, args.out)
    print(f"gen_protos: {len(files)} files in {args.out / 'interlock_client' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
