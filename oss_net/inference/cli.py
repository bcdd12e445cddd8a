"""Command line of inference (`oss-net-infer`, `python inference_oss_net.py`): argparse plus one call.

    oss-net-infer --load_model runs/x/best_model.pt --dataset_path BraTS2020 --split val --output_dir out
    oss-net-infer --load_model best.pt --dataset_path BraTS2020/.../BraTS20_Training_001 --mode both
    oss-net-infer --load_model best.pt --dataset_path LiTS/volume-3.nii --dataset lits --no_mesh

The configuration is read from the checkpoint; `--network_config` / `--dataset` are optional checks.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from oss_net.io import OSSNetError

from .predictor import AMP_MODES, MODES
from .runner import MESH_FORMATS, SPLITS, InferenceSettings, run_inference


def _stages(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stages takes integers such as '4,2,1', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oss-net-infer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    original = parser.add_argument_group("original flags")
    original.add_argument("--cuda_devices", default=None, help="sets CUDA_VISIBLE_DEVICES, e.g. '0' (default: leave as is)")
    original.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    original.add_argument("--load_model", required=True, help="model file or training checkpoint")
    original.add_argument("--network_config", default=None,
                          help="expected configuration (Table-1 or original name); default: the checkpoint's")
    original.add_argument("--dataset", default=None, help="brats or lits; default: the checkpoint's")
    original.add_argument("--dataset_path", required=True,
                          help="dataset root (with --split), or one case: a BraTS case folder or a LiTS volume file")
    parser.add_argument("--output_dir", default="inference_output", help="default: %(default)s")
    parser.add_argument("--split", default="val", choices=SPLITS, help="split of a dataset root (default: %(default)s)")
    parser.add_argument("--mode", default="auto", choices=MODES,
                        help="auto = prior with a segmentation head, else standard; both = run and compare the two")
    parser.add_argument("--stages", type=_stages, default=(4, 2, 1),
                        help="refinement strides, coarse to fine, each dividing the previous (default: 4,2,1)")
    parser.add_argument("--chunk_size", type=int, default=2**14, help="points decoded at once (default: %(default)s)")
    parser.add_argument("--amp", default="off", choices=tuple(AMP_MODES), help="autocast dtype (default: off)")
    parser.add_argument("--continue", dest="resume", action="store_true", help="skip cases whose outputs are complete")
    parser.add_argument("--no_mesh", action="store_true", help="write no meshes")
    parser.add_argument("--mesh_format", nargs="+", default=list(MESH_FORMATS), choices=MESH_FORMATS,
                        help="mesh file formats (default: obj ply)")
    parser.add_argument("--voxel_coordinates", action="store_true",
                        help="mesh vertices in model-grid voxel indices (the original's frame) instead of scanner mm")
    parser.add_argument("--refine_mesh", action="store_true", help="refine prediction mesh vertices through the decoder")
    parser.add_argument("--save_probabilities", action="store_true", help="also write the probability NIfTI")
    parser.add_argument("--no_overlay", action="store_true", help="write no overlay PNG")
    parser.add_argument("--recheck_boundary", action="store_true",
                        help="widen the refinement window to two coarse strides (safer on thin structures)")
    parser.add_argument("--face_budget", type=int, default=10_000, help="most faces per mesh (default: %(default)s)")
    parser.add_argument("--cache_dir", default=None, help="cache of pre-processed cases")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def settings_from_args(arguments: argparse.Namespace) -> InferenceSettings:
    return InferenceSettings(
        load_model=arguments.load_model,
        dataset_path=arguments.dataset_path,
        output_dir=arguments.output_dir,
        network_config=arguments.network_config,
        dataset=arguments.dataset,
        split=arguments.split,
        mode=arguments.mode,
        stages=tuple(arguments.stages),
        chunk_size=arguments.chunk_size,
        amp=arguments.amp,
        cpu=arguments.cpu,
        cuda_devices=arguments.cuda_devices,
        resume=arguments.resume,
        no_mesh=arguments.no_mesh,
        mesh_format=tuple(dict.fromkeys(arguments.mesh_format)),
        voxel_coordinates=arguments.voxel_coordinates,
        refine_mesh=arguments.refine_mesh,
        save_probabilities=arguments.save_probabilities,
        overlay=not arguments.no_overlay,
        recheck_boundary=arguments.recheck_boundary,
        face_budget=arguments.face_budget,
        cache_dir=arguments.cache_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run inference; a user error prints one line and exits with status 2."""
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        output_dir = run_inference(settings_from_args(arguments))
    except OSSNetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"results in {Path(output_dir).resolve()} (summary.csv, summary.json)")
    return 0
