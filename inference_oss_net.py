"""Inference with a trained OSS-Net (the original's entry point; same flags plus the new ones).

    python inference_oss_net.py --load_model runs/x/best_model.pt --dataset_path BraTS2020 --output_dir out
    python inference_oss_net.py --help

Everything happens in `oss_net.inference`; `oss-net-infer` is the same command.
"""
from __future__ import annotations

import sys

from oss_net.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
