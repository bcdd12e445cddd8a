"""Border bands around the foreground boundary, for border-weighted sampling (docs/reference.md §7).

border = dilate₁₃(|Sobel ∇ (label > 0)| > 0): the voxels whose Sobel gradient of the binary
foreground is non-zero (a two-voxel shell around the boundary) dilated by a 13³ cube, i.e. a band
about 7 voxels to each side. It equals scipy's `generic_gradient_magnitude(mask, sobel) > 0`
followed by `maximum_filter(size=13)`, and is computed with torch so it runs on CPU or GPU alike.

Border maps are stored as uint8 ``.nii.gz`` with the label's affine and header, so they open in any
NIfTI viewer and their grid can be checked against the label (the original used bool ``.pt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from oss_net.cli_errors import add_verbose_flag, run_command, with_flag
from oss_net.data.case_files import CaseFiles
from oss_net.data.layouts import discover
from oss_net.data.layouts.common import border_file_name, default_border_path
from oss_net.data.nifti import check_same_grid, read_header, read_label
from oss_net.datasets import DatasetError
from oss_net.io import WriteError, atomic_save_nifti, check_output_folder, write_error

DILATION = 13  # cube side of the dilation (max-pool kernel 13, stride 1, padding 6)


def compute_border(label: np.ndarray | torch.Tensor, device: str | torch.device | None = None) -> np.ndarray:
    """Bool border band `[D, H, W]` of the foreground (label > 0) of `label [D, H, W]`, computed on `device`."""
    tensor = torch.as_tensor(np.asarray(label) if isinstance(label, np.ndarray) else label)
    mask = (tensor.to(device) > 0).to(torch.float32)
    shell = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    for axis in range(3):
        shell |= _sobel(mask, axis) != 0
    band = shell
    for axis in range(3):  # the 13³ cube (max-pool k13 s1 p6) as three separable 1D passes
        band = _dilate_axis(band, axis, DILATION)
    return band.cpu().numpy()


def generate_borders(dataset: str, root: str | Path, output: str | Path | None = None,
                     device: str | torch.device = "cpu", overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write the border map of every labelled case of a dataset; returns the paths written.

    Each map goes next to its case (BraTS ``<case>_border.nii.gz``, LiTS ``border-N.nii.gz``) or into
    `output`. Existing maps are skipped unless `overwrite`. Every label is validated before its map
    is written, and each write is atomic, so an interrupted run can simply be restarted.
    """
    if output is not None:
        output = Path(output)
        check_output_folder(output)  # created, with its parents, when the first map is written
    cases = discover(dataset, root, "all")
    if output is None:
        check_case_folders(case_folders(cases, dataset, overwrite))
    written = []
    with tqdm(cases, desc=f"borders ({dataset})", unit="case", disable=not progress) as bar:  # closed on error too
        for case in bar:
            target = output / border_file_name(case.case_id, dataset) if output is not None else default_border_path(case, dataset)
            if target.exists() and not overwrite:
                check_stored_border(case, target)
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise write_error(error, target.parent) from error
            write_border(case, dataset, target, device)
            written.append(target)
    return written


def case_folders(cases: list[CaseFiles], dataset: str, overwrite: bool = False) -> list[Path]:
    """The folders the maps of `cases` go to when written next to their cases (those still to write)."""
    targets = (default_border_path(case, dataset) for case in cases)
    return sorted({target.parent for target in targets if overwrite or not target.exists()})


def check_case_folders(folders: list[Path]) -> None:
    """Before any work: each folder a map goes to must be writable; if not, say so and point to --output."""
    for folder in folders:
        try:
            check_output_folder(folder, "case folder")
        except WriteError as error:
            raise WriteError(f"{error}; pass --output FOLDER to write the border maps elsewhere") from None


def check_stored_border(case: CaseFiles, border: Path) -> None:
    """Refuse a stored border map that is not on its label's grid (headers only), rather than keep it."""
    if case.label is None:
        return
    label_shape, label_affine, _ = read_header(case.label)
    border_shape, border_affine, _ = read_header(border)
    try:
        check_same_grid((label_shape, label_affine, case.label), (border_shape, border_affine, border))
    except DatasetError as error:
        raise DatasetError(f"{error} (a stale border map: delete it or rerun with --overwrite)") from None


def write_border(case: CaseFiles, dataset: str, target: Path, device: str | torch.device = "cpu") -> None:
    """Compute and atomically write one case's border map (uint8 NIfTI on the label's grid)."""
    if case.label is None:
        raise DatasetError(f"{case.case_id}: no label file, cannot compute a border map")
    label = read_label(case.label, dataset)
    border = compute_border(label.array, device)
    atomic_save_nifti(border.astype(np.uint8), label.affine, target)


def read_border(path: Path, label_shape: tuple[int, ...], label_affine: np.ndarray, label_path: Path) -> np.ndarray:
    """A stored border map as bool, checked to lie on the label's grid."""
    border = read_label(path, "border")
    check_same_grid((label_shape, label_affine, label_path), (border.array.shape, border.affine, path))
    return border.array > 0


def _sobel(mask: torch.Tensor, axis: int) -> torch.Tensor:
    """scipy.ndimage.sobel (mode "reflect") of a 3D float tensor along `axis`: central difference, then [1, 2, 1] smoothing."""
    out = _shifted(mask, axis, 1) - _shifted(mask, axis, -1)
    for other in range(3):
        if other != axis:
            out = _shifted(out, other, -1) + 2 * out + _shifted(out, other, 1)
    return out


def _dilate_axis(mask: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Centred running OR of width `size` (odd) along `axis`, False outside: a 1D binary dilation.

    Built from O(log size) shifted ORs of a bool tensor, which is far faster on the CPU than
    max_pool3d with an elongated kernel and gives the same result.
    """
    radius = size // 2
    pad = [0, 0] * (mask.dim() - 1 - axis) + [radius, radius]
    window = F.pad(mask.to(torch.uint8), pad).bool()  # length n + 2r; window[i] = OR of 1 value
    reach = 1
    while reach * 2 <= size:
        length = window.shape[axis] - reach
        window = window.narrow(axis, 0, length) | window.narrow(axis, reach, length)
        reach *= 2
    rest = size - reach  # window[i] = OR of `reach` values from i; one more OR covers `size`
    if rest:
        length = window.shape[axis] - rest
        window = window.narrow(axis, 0, length) | window.narrow(axis, rest, length)
    return window


def _shifted(x: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """x[i + step] (step ±1) along `axis` with edge replication (scipy "reflect" for a one-voxel reach)."""
    n = x.shape[axis]
    if step > 0:
        return torch.cat([x.narrow(axis, 1, n - 1), x.narrow(axis, n - 1, 1)], dim=axis)
    return torch.cat([x.narrow(axis, 0, 1), x.narrow(axis, 0, n - 1)], dim=axis)


ROOT_HELP = {
    "brats": "folder holding MICCAI_BraTS2020_TrainingData/ (and TestData/ if used)",
    "lits": "folder holding volume-N.nii + segmentation-N.nii (or TrainingData/{input,segmentation}/)",
}


def border_cli(dataset: str, description: str, argv: list[str] | None = None) -> int:
    """The command line of generate_borders_bra_ts_2020.py / generate_borders_lits.py: argparse, then generate_borders."""
    import argparse


    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("root", help=ROOT_HELP[dataset])
    parser.add_argument("--output", default=None, help="write the maps into this folder instead of the case folders")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device for the computation; the result is identical (default: cuda if present)")
    parser.add_argument("--overwrite", action="store_true", help="recompute maps that already exist")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here (use --device cpu)")

    def work() -> None:
        written = generate_borders(dataset, args.root, args.output, args.device, args.overwrite)
        print(f"wrote {len(written)} border map(s)")

    return run_command(work, prog=parser.prog, verbose=args.verbose, continue_with=with_flag(argv, None))
