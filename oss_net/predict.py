"""`oss-net-predict -i INPUT [INPUT ...] -o OUTPUT_DIR -m CHECKPOINT`: label maps for your own scans.

    oss-net-predict -i Dataset901_Tumour/imagesTs -o predictions -m runs/x/best_model.pt
    oss-net-predict -i scan.nrrd -o out -m best.pt --save_probabilities --mesh --overlay
    oss-net-predict -i abdomen_0000.nii.gz -o out -m organs.pt --mode standard --mesh --min_component_voxels 0
    oss-net-predict -i a_flair.nii.gz a_t1.nii.gz a_t1ce.nii.gz a_t2.nii.gz -o out -m best.pt
    oss-net-predict -i dicom/CT_series/ -o out -m best.pt --output_format nii.gz
    python -m oss_net.predict -i BraTS20_Validation_001/ -o out -m best.pt --continue
    oss-net-predict -i imagesTs -o out -m best.pt --num_parts 8 --part_id $SLURM_ARRAY_TASK_ID   # 8 jobs, 1 folder

INPUT: one image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd); several channel files of one case (in the
checkpoint's channel order); an nnU-Net imagesTs-style folder of `<case>_XXXX<ext>`; a BraTS case folder; a
DICOM series folder (`--series_uid` picks one of several). Writes `<case><ext>` label maps flat in OUTPUT_DIR,
on each input's grid with its exact geometry, in its format (a DICOM series: .mha) unless --output_format,
ready for `oss-net-evaluate OUTPUT_DIR LABELS` and nnU-Net's evaluator (probabilities go to
OUTPUT_DIR/probabilities/); with `--output_spacing MM` on the grid of that spacing covering the input's box
(label map, probabilities and meshes; `python -m oss_net.resample_label` puts a label on that grid for
scoring). OUTPUT_DIR may not be an input folder, and a file there that this tool did not
write is never replaced (`--overwrite` to replace it). See `oss_net.inference.files` and
`oss_net.inference.segmenter`.
"""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from oss_net.cli_errors import run_command, with_flag
from oss_net.geometry import add_prefer_flag
from oss_net.inference import PredictOptions, WriteOptions
from oss_net.inference.lattice import REFINEMENTS
from oss_net.inference.options import MODES, OUTPUT_FORMATS, OUTPUT_SPACING_HELP
from oss_net.inference.segmenter import Segmenter
from oss_net.inference.sharding import add_sharding_flags, rank_device, resolve_part


def build_parser() -> argparse.ArgumentParser:
    """Every prediction flag of `oss-net-infer` that applies to loose files, with its defaults (PredictOptions,
    WriteOptions) and names; no abbreviations (`--mode` is never `--model`)."""
    predict, write = PredictOptions, WriteOptions  # the dataclass defaults are the one home of the defaults
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="INPUT",
                        help="image file(s) of one case, an imagesTs-style folder, a BraTS case folder, or a DICOM "
                             "series folder")
    parser.add_argument("-o", "--output_dir", required=True, help="folder for <case><ext> (created if needed)")
    parser.add_argument("-m", "--model", required=True, metavar="CHECKPOINT", help="model file or training checkpoint")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also write probabilities/<case><ext> (every class, channels last)")
    parser.add_argument("--mesh", action="store_true",
                        help="also write prediction meshes (obj, ply): <case>_prediction, or one <case>_<class>_prediction "
                             "per class")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <case>_overlay.png: slices of the scan with the prediction outlined, a legend "
                             "naming every colour")
    parser.add_argument("--output_format", choices=OUTPUT_FORMATS, default=None,
                        help="image format of the outputs (default: each input's own; a DICOM series: mha)")
    parser.add_argument("--series_uid", default=None, metavar="UID",
                        help="the DICOM series to read from an input folder holding several (the error lists them)")
    parser.add_argument("--mode", default=predict.mode, choices=MODES,
                        help="auto = the model's default (prior with a segmentation head, else standard); both = run "
                             "and compare the two (default: %(default)s)")
    parser.add_argument("--refinement", default=predict.refinement, choices=REFINEMENTS,
                        help="the refinement's candidate rule (default: original for a paper-mode checkpoint, else ours)")
    parser.add_argument("--threshold", type=float, default=predict.threshold,
                        help="probability above which a binary model's voxel or a region is foreground; exclusive "
                             "classes take the likeliest one instead (default: %(default)s)")
    parser.add_argument("--min_component_voxels", type=int, default=write.min_component_voxels,
                        help="smaller connected components are left out of the meshes (default: %(default)s)")
    parser.add_argument("--output_spacing", type=float, nargs="+", default=None, metavar="MM", help=OUTPUT_SPACING_HELP)
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="skip cases whose <case>.nii.gz exists (it is written last)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in OUTPUT_DIR with an output's name that this tool did not write there "
                             "(refused otherwise)")
    add_sharding_flags(parser)
    add_prefer_flag(parser)
    parser.add_argument("--verbose", action="store_true", help="debug logging, and the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Predict; an error prints one line (oss_net.cli_errors): status 2 for bad input, 1 for a bug."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def work() -> None:
        part = resolve_part(arguments.num_parts, arguments.part_id)
        segmenter = Segmenter(arguments.model, device="cpu" if arguments.cpu else rank_device(), prefer=arguments.prefer,
                              mode=arguments.mode, refinement=arguments.refinement, threshold=arguments.threshold,
                              output_spacing=arguments.output_spacing)
        written = segmenter.predict_folder(arguments.input, arguments.output_dir,
                                           probabilities=arguments.save_probabilities, meshes=arguments.mesh,
                                           overlay=arguments.overlay, output_format=arguments.output_format,
                                           resume=arguments.resume, series_uid=arguments.series_uid,
                                           overwrite=arguments.overwrite, part=part,
                                           min_component_voxels=arguments.min_component_voxels)
        print(f"{len(written)} label map(s) in {arguments.output_dir}")

    return run_command(work, prog=parser.prog, verbose=arguments.verbose, continue_with=with_flag(argv, "--continue"))


if __name__ == "__main__":
    raise SystemExit(main())
