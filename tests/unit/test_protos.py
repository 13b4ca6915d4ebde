"""The generated code in services/pb must match protos/ (regenerate with `make protos`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh():
    result = subprocess.run(
        [sys.executable, "tools/gen_protos.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_proto_field_is_commented():
    # buf style: every message, enum value and field carries a comment on the line above it.
    for proto in (ROOT / "protos").rglob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            is_field = (
                stripped.endswith(";")
                and "=" in stripped
                and not stripped.startswith(("syntax", "package", "import", "option"))
            )
            if is_field or stripped.startswith(("message ", "enum ", "service ", "rpc ")):
                assert lines[i - 1].strip().startswith("//"), (
                    f"{proto.name}:{i + 1} has no comment: {stripped}"
                )
