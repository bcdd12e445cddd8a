"""`oss-net-predict -i INPUT [INPUT ...] -o OUTPUT_DIR -m CHECKPOINT`: label maps for your own scans.

    oss-net-predict -i Dataset901_Tumour/imagesTs -o predictions -m runs/x/best_model.pt
    oss-net-predict -i scan.nii.gz -o out -m best.pt --save_probabilities --mesh
    oss-net-predict -i a_flair.nii.gz a_t1.nii.gz a_t1ce.nii.gz a_t2.nii.gz -o out -m best.pt
    python -m oss_net.predict -i BraTS20_Validation_001/ -o out -m best.pt --continue

INPUT: one NIfTI file; several channel files of one case (in the checkpoint's channel order); an
nnU-Net imagesTs-style folder of `<case>_XXXX.nii.gz`; a BraTS case folder. Writes `<case>.nii.gz`
label maps flat in OUTPUT_DIR, on each input's grid (shape, affine, header), ready for
`oss-net-evaluate OUTPUT_DIR LABELS`. OUTPUT_DIR may not be an input folder, and a file there that this
tool did not write is never replaced (`--overwrite` to replace it). See `oss_net.inference.files` for
the details.
"""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from oss_net.cli_errors import run_command
from oss_net.geometry import add_prefer_flag
from oss_net.inference.files import predict_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="INPUT",
                        help="NIfTI file(s) of one case, an imagesTs-style folder, or a BraTS case folder")
    parser.add_argument("-o", "--output_dir", required=True, help="folder for <case>.nii.gz (created if needed)")
    parser.add_argument("-m", "--model", required=True, metavar="CHECKPOINT", help="model file or training checkpoint")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--save_probabilities", action="store_true", help="also write <case>_probabilities.nii.gz")
    parser.add_argument("--mesh", action="store_true", help="also write <case>_prediction meshes (obj, ply)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="skip cases whose <case>.nii.gz exists (it is written last)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in OUTPUT_DIR with an output's name that this tool did not write there "
                             "(refused otherwise)")
    add_prefer_flag(parser)
    parser.add_argument("--verbose", action="store_true", help="debug logging, and the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Predict; an error prints one line (oss_net.cli_errors): status 2 for bad input, 1 for a bug."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def work() -> None:
        written = predict_files(arguments.input, arguments.output_dir, arguments.model, cpu=arguments.cpu,
                                save_probabilities=arguments.save_probabilities, mesh=arguments.mesh,
                                resume=arguments.resume, overwrite=arguments.overwrite, prefer=arguments.prefer)
        print(f"{len(written)} label map(s) in {arguments.output_dir}")

    return run_command(work, prog=parser.prog, verbose=arguments.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
