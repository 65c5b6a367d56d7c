"""Draw docs/assets/preset-curves.png: the validation error per epoch of the three presets --
`fast` and `original` trained here (seed 1), and `best` as the built-in model's own history
(a `best` run; its checkpoint keeps every epoch's figures).

    python docs/scripts/preset_curves.py [--epochs N]   # about 3 minutes on 2 CPU cores; needs the real MNIST

``--epochs`` shortens the `original` run (a test draws the picture with one epoch).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "assets" / "preset-curves.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the original preset (default: its own)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    from mnistctl.checkpoint import pretrained_path
    from mnistctl.plotting import plot_runs

    runs = Path(tempfile.mkdtemp(prefix="mnistctl-presets-"))
    for preset in ("fast", "original"):
        extra = ["--epochs", str(args.epochs)] if args.epochs and preset == "original" else []
        subprocess.run([sys.executable, "-m", "mnistctl", "train", "--preset", preset, "--seed", "1", "--quiet",
                        "--run-dir", str(runs / preset), *extra], check=True)
    best = runs / "best (the built-in model)"
    best.mkdir()
    shutil.copy(pretrained_path(), best / "last.pt")  # a run directory holding the built-in model's checkpoint
    _, labels, path = plot_runs([runs / "fast", runs / "original", best], args.output, error_log=True)
    print(f"Wrote {path} ({', '.join(labels)})")


if __name__ == "__main__":
    main()
