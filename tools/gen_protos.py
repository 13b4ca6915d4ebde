"""Generate the Python code for protos/ into services/pb/ (the one command: `make protos`).

grpc_tools writes absolute imports that follow the proto package path (``from r1forge.v1 import
rollout_pb2``); they are rewritten to package-relative imports so the generated modules live inside
the ``services`` package without touching sys.path. ``--check`` regenerates into a temporary
directory and fails when the checked-in code differs, which is how CI catches stale protos.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "services" / "pb"
IMPORT_RE = re.compile(r"^from r1forge\.v1 import (\w+_pb2)", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under protos/ into out_dir; return the generated files."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    grpc_include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{grpc_include}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed: see the messages above")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted(Path(raw).rglob("*.py*")):
            text = IMPORT_RE.sub(r"from . import \1", src.read_text())
            dst = out_dir / src.name
            dst.write_text(text)
            written.append(dst)
    (out_dir / "__init__.py").write_text(
        '"""Generated from protos/ by tools/gen_protos.py; do not edit."""\n'
    )
    return written


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            p.name
            for p in fresh
            if not (OUT / p.name).exists() or not filecmp.cmp(p, OUT / p.name, shallow=False)
        ]
    if stale:
        print(f"services/pb is stale for {stale}: run `make protos` and commit the result", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if services/pb is out of date")
    if parser.parse_args().check:
        return check()
    generate(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
