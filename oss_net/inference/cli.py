"""Command line of inference (`oss-net-infer`, `python inference_oss_net.py`): argparse plus one call.

    oss-net-infer --load_model runs/x/best_model.pt --dataset_path BraTS2020 --split val --output_dir out
    oss-net-infer --load_model best.pt --dataset_path BraTS2020/.../BraTS20_Training_001 --mode both
    oss-net-infer --load_model best.pt --dataset_path LiTS/volume-3.nii --dataset lits --no_mesh

The configuration is read from the checkpoint; `--network_config` / `--dataset` are optional checks.
`--flat` adds `<output_dir>/<case><ext>` masks, ready for `oss-net-evaluate <output_dir> <labels>`; image files
take each input's format (NIfTI as .nii.gz) unless `--output_format` names one.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from oss_net.cli_errors import run_command, with_flag
from oss_net.data import DATASETS, SPLITS, canonical_dataset
from oss_net.geometry import add_prefer_flag
from oss_net.io import OSSNetError
from oss_net.meshing import MESH_FORMATS, MESH_SPACES
from oss_net.precision import AMP_MODES

from .lattice import REFINEMENTS
from .options import MODES, OUTPUT_FORMATS, OUTPUT_SPACING_HELP, InferenceSettings
from .run_summary import summary_table
from .sharding import add_sharding_flags, resolve_part
from .runner import run_inference


def _stages(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stages takes integers such as '4,2,1', got {text!r}") from None


def _dataset(text: str) -> str:
    try:
        return canonical_dataset(text)
    except OSSNetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """Groups in reading order: required, the original's flags, prediction, outputs, meshes, run control.

    The program name is left to argparse, so `oss-net-infer` and `inference_oss_net.py` each name themselves.
    One declaration per flag, in the order `--help` shows them (meshes in `add_mesh_flags`).
    """
    defaults = InferenceSettings  # the dataclass defaults are the one home of every default shown here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False, allow_abbrev=False)
    required = parser.add_argument_group("required")
    required.add_argument("--load_model", required=True, help="model file or training checkpoint")
    required.add_argument("--dataset_path", required=True,
                          help="dataset root (with --split), or one case: a BraTS case folder or a LiTS volume file")
    original = parser.add_argument_group("original flags")
    original.add_argument("--cuda_devices", default=None, help="sets CUDA_VISIBLE_DEVICES, e.g. '0' (default: leave as is)")
    original.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    original.add_argument("--network_config", default=None,
                          help="expected configuration (Table-1 or original name); default: the checkpoint's")
    original.add_argument("--dataset", default=None, type=_dataset, choices=DATASETS,
                          help="expected dataset; default: the checkpoint's")
    predict = parser.add_argument_group("prediction")
    predict.add_argument("--split", default=defaults.split, choices=SPLITS, help="split of a dataset root (default: %(default)s)")
    predict.add_argument("--mode", default=defaults.mode, choices=MODES,
                         help="auto = prior with a segmentation head, else standard; both = run and compare the two")
    predict.add_argument("--stages", type=_stages, default=defaults.stages,
                         help="refinement strides, coarse to fine, each dividing the previous (default: 4,2,1)")
    predict.add_argument("--threshold", type=float, default=defaults.threshold,
                         help="probability above which a binary model's voxel or a region is foreground; exclusive "
                              "classes take the likeliest one instead (default: %(default)s)")
    predict.add_argument("--recheck_boundary", action="store_true",
                         help="widen the refinement window to two coarse strides (safer on thin structures)")
    predict.add_argument("--refinement", default=defaults.refinement, choices=REFINEMENTS,
                         help="ours = decode where coarse labels disagree; original = the original's rule, decoding every "
                              "voxel next to a positive (slower; keeps pockets under ~4 voxels). Default: original for a "
                              "paper-mode checkpoint, ours otherwise")
    predict.add_argument("--chunk_size", type=int, default=defaults.chunk_size,
                         help="points decoded at once (default: 2^14 on a GPU, 2^10 on the CPU)")
    predict.add_argument("--amp", default=defaults.amp, choices=tuple(AMP_MODES), help="autocast dtype (default: %(default)s)")
    add_prefer_flag(predict)
    predict.add_argument("--output_spacing", type=float, nargs="+", default=None, metavar="MM",
                         help=OUTPUT_SPACING_HELP)
    files = parser.add_argument_group("outputs")
    files.add_argument("--output_dir", default=defaults.output_dir, help="default: %(default)s")
    files.add_argument("--flat", action="store_true",
                       help="also write <output_dir>/<case><ext> (for oss-net-evaluate and nnU-Net's evaluation)")
    files.add_argument("--save_probabilities", action="store_true", help="also write the probability maps")
    files.add_argument("--output_format", default=defaults.output_format, choices=OUTPUT_FORMATS,
                       help="image format of every image file (default: each input's own; NIfTI as nii.gz, a DICOM "
                            "series as mha)")
    files.add_argument("--no_overlay", action="store_true", help="write no overlay PNG")
    files.add_argument("--tolerance_mm", type=float, default=defaults.tolerance_mm,
                       help="NSD tolerance in mm (default: %(default)s)")
    add_mesh_flags(parser, defaults)
    run = parser.add_argument_group("run control")
    run.add_argument("--continue", dest="resume", action="store_true",
                     help="skip cases whose outputs are complete and were written with the same settings and checkpoint")
    run.add_argument("--skip_bad_cases", action="store_true",
                     help="skip a case whose files are bad (its reason goes into the summary) instead of stopping")
    add_sharding_flags(run)
    run.add_argument("--wait", action="store_true",
                     help="wait for another run writing to --output_dir to finish instead of refusing to start")
    run.add_argument("--cache_dir", default=None, help="cache of pre-processed cases")
    run.add_argument("--overwrite", action="store_true",
                     help="replace entries of --output_dir with an output's name that this tool did not write there "
                          "(refused otherwise)")
    run.add_argument("--verbose", action="store_true", help="debug logging, and the traceback of an error")
    run.add_argument("-h", "--help", action="help", help="show this help and exit")
    return parser


def add_mesh_flags(parser: argparse.ArgumentParser, defaults: type[InferenceSettings]) -> None:
    """The mesh group of `build_parser`: which meshes, in which frame and how fine."""
    meshes = parser.add_argument_group("meshes")
    meshes.add_argument("--no_mesh", action="store_true", help="write no meshes")
    meshes.add_argument("--mesh_format", nargs="+", default=list(defaults.mesh_format), choices=MESH_FORMATS,
                        help="mesh file formats (default: %(default)s)")
    meshes.add_argument("--mesh_space", default=defaults.mesh_space, choices=MESH_SPACES,
                        help="world frame of the vertices, named in each file (default: %(default)s, as 3D Slicer reads)")
    meshes.add_argument("--voxel_coordinates", action="store_true",
                        help="mesh vertices in model-grid voxel indices (the original's frame) instead of scanner mm")
    meshes.add_argument("--mesh_edge_mm", type=float, default=defaults.mesh_edge_mm,
                        help="target edge length; sizes each mesh's face budget from its area (default: %(default)s)")
    meshes.add_argument("--face_budget", type=int, default=defaults.face_budget,
                        help="at most this many faces per mesh unless keeping it closed needs more (default: none)")
    meshes.add_argument("--min_component_voxels", type=int, default=defaults.min_component_voxels,
                        help="smaller connected components are left out of the mesh (default: %(default)s)")
    meshes.add_argument("--refine_mesh", action="store_true", help="refine prediction mesh vertices through the decoder")


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
        mesh_space=arguments.mesh_space,
        voxel_coordinates=arguments.voxel_coordinates,
        refine_mesh=arguments.refine_mesh,
        save_probabilities=arguments.save_probabilities,
        overlay=not arguments.no_overlay,
        threshold=arguments.threshold,
        recheck_boundary=arguments.recheck_boundary,
        refinement=arguments.refinement,
        output_spacing=None if arguments.output_spacing is None else tuple(arguments.output_spacing),
        mesh_edge_mm=arguments.mesh_edge_mm,
        face_budget=arguments.face_budget,
        min_component_voxels=arguments.min_component_voxels,
        tolerance_mm=arguments.tolerance_mm,
        output_format=arguments.output_format,
        flat=arguments.flat,
        cache_dir=arguments.cache_dir,
        wait=arguments.wait,
        skip_bad_cases=arguments.skip_bad_cases,
        overwrite=arguments.overwrite,
        prefer=arguments.prefer,
        **asdict(resolve_part(arguments.num_parts, arguments.part_id)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run inference; an error prints one line (oss_net.cli_errors): status 2 for bad input, 1 for a bug."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def work() -> None:
        output_dir = run_inference(settings_from_args(arguments))
        rows = json.loads((Path(output_dir) / "summary.json").read_text())
        print(summary_table([row for row in rows if "skipped" not in row]))
        skipped = [row for row in rows if "skipped" in row]
        if skipped:
            print(f"skipped {len(skipped)} bad case(s): " + "; ".join(f"{row['case']} ({row['skipped']})" for row in skipped))
        print(f"results in {Path(output_dir).resolve()} (summary.csv, summary.json)")

    return run_command(work, prog=parser.prog, verbose=arguments.verbose, continue_with=with_flag(argv, "--continue"))
