"""`python -m oss_net.resample_label LABEL REFERENCE OUTPUT`: a label map on another image's grid, by nearest neighbour.

    python -m oss_net.resample_label labelsTr/case_001.nii.gz predictions/case_001.nii.gz labels_0.5mm/case_001.nii.gz

For scoring a prediction written at `--output_spacing` (a finer grid covering the label's box) with
`oss-net-evaluate`, which compares files on one grid only. Each voxel of REFERENCE's grid takes the value of
the LABEL voxel that contains its centre (world millimetres through both affines; 0 outside LABEL's box), so
the label keeps its values and its staircase: no new boundary is invented. OUTPUT has REFERENCE's shape,
affine and header (qform/sform codes) and LABEL's values, in the format its suffix names (NIfTI, NRRD, MetaImage).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.data.formats import save_image
from oss_net.data.grid import nearest_label
from oss_net.data.nifti import read_header, read_label_map
from oss_net.io import prepare_output_folder

COMMAND = "python -m oss_net.resample_label"


def resample_label(label_path: Path, reference_path: Path, output_path: Path) -> Path:
    """Write LABEL on REFERENCE's grid to OUTPUT (module docstring); returns OUTPUT."""
    label = read_label_map(Path(label_path))
    shape, affine, header = read_header(Path(reference_path))
    prepare_output_folder(Path(output_path).parent)
    save_image(nearest_label(label.array, label.affine, shape, affine), affine, Path(output_path), header)
    return Path(output_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("label", type=Path, help="the label map (any image format the commands read)")
    parser.add_argument("reference", type=Path, help="an image on the grid to resample onto (a prediction)")
    parser.add_argument("output", type=Path, help="where to write the resampled label map")
    add_verbose_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Resample; an error prints one line (oss_net.cli_errors): status 2 for bad input."""
    parser = build_parser()
    arguments = parser.parse_args(argv)

    def work() -> None:
        written = resample_label(arguments.label, arguments.reference, arguments.output)
        print(f"wrote {written}")

    return run_command(work, prog=parser.prog, verbose=arguments.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
