"""Write the border map of every labelled LiTS case (border-weighted sampling, reference §7).

    python generate_borders_lits.py "/data/LITS Challenge"      # next to each segmentation: border-N.nii.gz
    python generate_borders_lits.py "/data/LITS Challenge" --output /data/borders --device cuda

Cases that already have a map are skipped (--overwrite redoes them); writes are atomic, so an
interrupted run can be restarted. Training finds the maps itself and computes missing ones on the fly.
"""
from __future__ import annotations

import argparse
import sys

import torch

from oss_net.data.borders import generate_borders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder holding volume-N.nii + segmentation-N.nii (or TrainingData/{input,segmentation}/)")
    parser.add_argument("--output", default=None, help="write the maps into this folder instead of the case folders")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device for the computation; the result is identical (default: cuda if present)")
    parser.add_argument("--overwrite", action="store_true", help="recompute maps that already exist")
    args = parser.parse_args(argv)
    written = generate_borders("lits", args.root, args.output, args.device, args.overwrite)
    print(f"wrote {len(written)} border map(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
