"""Write the shipped preference dataset: data/preferences/{train,heldout}.jsonl.

The defaults reproduce the checked-in files byte for byte (a unit test compares them), so the data is
a build product of `services.tasks.preferences`, never hand-edited:

    python tools/make_preferences.py            # rewrite data/preferences/ from the defaults
    python tools/make_preferences.py --check    # fail when the shipped files differ from the defaults
"""

from __future__ import annotations

import argparse
import filecmp
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

from services.tasks.preferences import build_preference_pairs, split_pairs, write_pairs  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "preferences"
DEFAULT_N = 2400
DEFAULT_SEED = 0
DEFAULT_HELDOUT_FRACTION = 1 / 6
SPLIT_FILES = ("train.jsonl", "heldout.jsonl")

log = logging.getLogger("make_preferences")


def make_preference_splits(
    n: int = DEFAULT_N, seed: int = DEFAULT_SEED, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, heldout) rows exactly as the files are written."""
    return split_pairs(build_preference_pairs(n, seed), heldout_fraction, seed)


def write_preference_files(
    out_dir: Path,
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> dict[str, int]:
    """Write train.jsonl and heldout.jsonl under `out_dir`; return rows written per file."""
    train, heldout = make_preference_splits(n, seed, heldout_fraction)
    return {name: write_pairs(out_dir / name, rows) for name, rows in zip(SPLIT_FILES, (train, heldout))}


def _same(fresh: Path, shipped: Path) -> bool:
    return shipped.is_file() and filecmp.cmp(fresh, shipped, shallow=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="number of pairs before the split")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator and split seed")
    parser.add_argument(
        "--heldout-fraction", type=float, default=DEFAULT_HELDOUT_FRACTION, help="share of topics held out"
    )
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.check:
        counts = write_preference_files(args.out, args.n, args.seed, args.heldout_fraction)
        log.info("wrote %s under %s", counts, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write_preference_files(Path(tmp), args.n, args.seed, args.heldout_fraction)
        stale = [name for name in SPLIT_FILES if not _same(Path(tmp) / name, args.out / name)]
    if stale:
        log.error("%s differ from the generator; run `python tools/make_preferences.py`", stale)
        return 1
    log.info("%s are up to date", list(SPLIT_FILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
