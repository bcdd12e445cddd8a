"""Synthetic BraTS 2020 and LiTS cases in their real on-disk layouts, for the demo and the tests.

BraTS: a brain-like ellipsoid with smooth tissue texture and a blobby tumour at a random position,
labelled like real data (2 oedema ⊃ 1 necrotic core ⊃ rim of 4 enhancing tumour) with real
proportions (the core about half of the whole tumour, the enhancing rim a quarter), in four
modalities whose contrasts differ the way MRI sequences do (FLAIR and T2 bright on the whole
tumour, T1ce bright on the enhancing rim and dark in the necrosis, T1 dark in the core). LiTS: a
CT-like body in Hounsfield units with a liver (1) and a darker tumour (2) inside it. Both carry a non-identity
affine (flipped axes, spacing ≠ 1, origin offset; LiTS anisotropic). Everything depends only on
the seed, and the gzip streams carry no timestamp, so a seed always gives identical bytes.

    python -m oss_net.data.synthetic --layout brats --cases 8 --shape 60 60 38 --seed 0 --out data/synth

`--layout nnunet|msd|flare` writes the layouts of `oss_net.data.synthetic_layouts` instead.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import fft, ndimage

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.data.errors import DataArgumentError
from oss_net.data.layouts.brats import BRATS_MODALITIES, BRATS_TRAINING
from oss_net.data.synthetic_layouts import LAYOUT_SHAPES, write_layout_dataset
from oss_net.io import atomic_save_nifti, check_output_folder

DEFAULT_SHAPE = {"brats": (60, 60, 38), "lits": (48, 48, 32)}  # BraTS: 240×240×155 / 4 (padded to the 64×64×40 demo grid)

# Tumour core radius as a fraction of the whole tumour's (core ≈ 0.8³ ≈ half its volume) and the enhancing rim's
# thickness in voxels (≈ a quarter of the whole tumour at the demo's 60×60×38), as in BraTS cases.
CORE_RADIUS_FRACTION = 0.8
ENHANCING_RIM_VOXELS = 2
# Mean intensity per tissue (background, brain, oedema, necrotic core, enhancing) for each MRI modality.
# Enhancing tumour: brightest on T1ce, and bright on FLAIR and T2 too (solid tumour is T2-hyperintense);
# necrosis: darkest on T1 and T1ce, bright on T2 (fluid). FLAIR + T2 thus rise from brain to oedema,
# necrosis and enhancing tumour: each region (WT ⊃ TC ⊃ ET) is also brighter than what surrounds it there,
# which the decoder's one-channel patch map can carry (with ET bright on T1ce alone, the regions demo
# never learnt ET: Dice 0 after 10, 20 or 24 epochs).
_BRATS_CONTRAST = {
    "flair": (0.0, 420.0, 1000.0, 900.0, 1250.0),
    "t1": (0.0, 600.0, 420.0, 220.0, 480.0),
    "t1ce": (0.0, 560.0, 500.0, 260.0, 1150.0),
    "t2": (0.0, 380.0, 920.0, 1300.0, 1300.0),
}


def write_synthetic_dataset(layout: str, out: str | Path, cases: int = 4, shape: Sequence[int] | None = None,
                            seed: int = 0) -> Path:
    """Write `cases` synthetic cases in the `layout` ("brats" | "lits") folder structure under `out`; returns `out`.

    BraTS: ``out/MICCAI_BraTS2020_TrainingData/BraTS20_Training_NNN/..._{flair,t1,t1ce,t2,seg}.nii.gz``.
    LiTS: ``out/volume-N.nii`` and ``out/segmentation-N.nii``.
    """
    if layout in LAYOUT_SHAPES:  # nnunet, msd, flare: returns the dataset folder (oss_net.data.synthetic_layouts)
        return write_layout_dataset(layout, out, cases, shape, seed)
    if layout not in DEFAULT_SHAPE:
        raise DataArgumentError(f"layout must be 'brats' or 'lits', got {layout!r}")
    shape = tuple(int(s) for s in (shape or DEFAULT_SHAPE[layout]))
    if len(shape) != 3 or min(shape) < 16:
        raise DataArgumentError(f"shape must be three sizes ≥ 16, got {shape}")
    out = Path(out)
    for index in range(cases):
        rng = np.random.default_rng([seed, index])
        if layout == "brats":
            _write_brats_case(out, index + 1, shape, rng)
        else:
            _write_lits_case(out, index, shape, rng)
    return out


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """BraTS-like affine (x and y flipped, origin offset) scaled so the volume spans 240×240×155 mm."""
    spacing = np.array([240.0, 240.0, 155.0]) / np.asarray(shape, dtype=np.float64)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (0.0, 239.0, 0.0)
    return affine


def lits_affine(shape: Sequence[int]) -> np.ndarray:
    """CT-like anisotropic affine: in-plane 0.7 mm × 512 field of view, 2.5 mm × 160 slices of extent."""
    spacing = np.array([0.7 * 512 / shape[0], 0.7 * 512 / shape[1], 2.5 * 160 / shape[2]])
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (172.3, -179.6, -386.0)
    return affine


def _write_brats_case(out: Path, number: int, shape: tuple[int, int, int], rng: np.random.Generator) -> None:
    grid = _unit_grid(shape)
    brain = _blob(grid, np.zeros(3), np.array([0.78, 0.86, 0.82]), rng, roughness=0.08)
    label = np.zeros(shape, dtype=np.uint8)
    centre = rng.uniform(-0.3, 0.3, size=3)
    radius = rng.uniform(0.32, 0.45)
    oedema = _blob(grid, centre, radius * rng.uniform(0.85, 1.15, size=3), rng, roughness=0.25) & brain
    core_centre = centre + rng.normal(0, 0.03, 3)
    core = _blob(grid, core_centre, CORE_RADIUS_FRACTION * radius * rng.uniform(0.85, 1.15, 3), rng, 0.2) & oedema
    enhancing = core & ~ndimage.binary_erosion(core, iterations=ENHANCING_RIM_VOXELS)  # a rim around the necrosis
    label[oedema] = 2
    label[core] = 1
    label[enhancing] = 4
    tissue = np.select([label == 4, label == 1, label == 2, brain], [4, 3, 2, 1], default=0)
    bias = 1.0 + 0.1 * smooth_noise(shape, rng, sigma=max(shape) / 4)
    case_id = f"BraTS20_Training_{number:03d}"
    folder = out / BRATS_TRAINING / case_id
    folder.mkdir(parents=True, exist_ok=True)
    affine = brats_affine(shape)
    for modality in BRATS_MODALITIES:
        means = np.asarray(_BRATS_CONTRAST[modality])
        texture = 1.0 + 0.06 * smooth_noise(shape, rng, sigma=1.5)
        image = means[tissue] * texture * bias + rng.normal(0.0, 25.0, size=shape) * (tissue > 0)
        atomic_save_nifti(np.clip(image, 0, None).astype(np.int16), affine, folder / f"{case_id}_{modality}.nii.gz")
    atomic_save_nifti(label, affine, folder / f"{case_id}_seg.nii.gz")


def _write_lits_case(out: Path, number: int, shape: tuple[int, int, int], rng: np.random.Generator) -> None:
    grid = _unit_grid(shape)
    body = _blob(grid, np.array([0.0, 0.05, 0.0]), np.array([0.85, 0.7, 2.0]), rng, roughness=0.05)
    fat = body & ~_blob(grid, np.array([0.0, 0.05, 0.0]), np.array([0.75, 0.6, 2.0]), rng, roughness=0.05)
    spine = _blob(grid, np.array([0.0, 0.5, 0.0]), np.array([0.1, 0.1, 2.0]), rng, roughness=0.0) & body
    liver_centre = np.array([rng.uniform(-0.4, -0.2), rng.uniform(-0.2, 0.1), rng.uniform(-0.2, 0.2)])
    liver = _blob(grid, liver_centre, np.array([0.42, 0.42, 0.5]) * rng.uniform(0.85, 1.15, 3), rng, 0.15) & body & ~fat
    tumour_centre = liver_centre + rng.uniform(-0.12, 0.12, 3)
    tumour = _blob(grid, tumour_centre, rng.uniform(0.14, 0.22) * np.ones(3), rng, 0.2) & liver
    label = np.zeros(shape, dtype=np.uint8)
    label[liver] = 1
    label[tumour] = 2
    hounsfield = np.full(shape, -1000.0)
    hounsfield[body] = 40.0
    hounsfield[fat] = -100.0
    hounsfield[spine] = 700.0
    hounsfield[liver] = 130.0
    hounsfield[tumour] = 45.0
    image = hounsfield + rng.normal(0.0, 12.0, size=shape) + 10.0 * smooth_noise(shape, rng, sigma=2.0)
    out.mkdir(parents=True, exist_ok=True)
    affine = lits_affine(shape)
    atomic_save_nifti(np.clip(image, -1024, 3071).astype(np.int16), affine, out / f"volume-{number}.nii")
    atomic_save_nifti(label, affine, out / f"segmentation-{number}.nii")


def _unit_grid(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel centres in [−1, 1] per axis, `[3, D, H, W]`."""
    return np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in shape], indexing="ij"))


def smooth_noise(shape: tuple[int, int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = gaussian_smooth(rng.normal(size=shape), sigma)
    return noise / (noise.std() + 1e-12)


def gaussian_smooth(volume: np.ndarray, sigma: float) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter(volume, sigma)` of a float64 volume (reflect boundary, kernel cut at 4σ).

    Along an axis no longer than the kernel, the axis is filtered in cosine space, several times faster
    than scipy's loop over the taps (the blobs of a 512×512×96 LiTS case: σ = 64, 513 taps, 21 s → 2 s).
    The reflect boundary (… c b a | a b c … c b a | …) continues each line as the even, 2n-periodic
    sequence the DCT-II assumes, so a symmetric kernel multiplies DCT-II coefficient k by
    Σ_j w_j cos(π k j / n), taps past the ends included; the values agree with scipy's to rounding.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets**2)  # scipy's kernel, term for term
    weights /= weights.sum()
    for axis, size in enumerate(volume.shape):
        if offsets.size < size:
            volume = ndimage.gaussian_filter1d(volume, sigma, axis=axis)
        else:
            response = np.cos(np.pi / size * np.outer(np.arange(size), offsets)) @ weights  # [size]
            along_axis = [size if a == axis else 1 for a in range(volume.ndim)]
            volume = fft.idct(fft.dct(volume, axis=axis) * response.reshape(along_axis), axis=axis)
    return volume


def _blob(grid: np.ndarray, centre: np.ndarray, radii: np.ndarray, rng: np.random.Generator, roughness: float) -> np.ndarray:
    """An ellipsoid whose surface is perturbed by smooth noise (`roughness` × radius)."""
    distance = np.sqrt(sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)))
    wobble = roughness * smooth_noise(grid.shape[1:], rng, sigma=max(grid.shape[1:]) / 8) if roughness else 0.0
    return distance < 1.0 + wobble


def build_parser() -> argparse.ArgumentParser:
    shapes = {**DEFAULT_SHAPE, **LAYOUT_SHAPES}
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m oss_net.data.synthetic",
                                     description="Write synthetic BraTS 2020, LiTS, nnU-Net, Decathlon or FLARE21 "
                                                 "cases in their real layouts.")
    parser.add_argument("--layout", choices=sorted(shapes), required=True, help="dataset layout to write")
    parser.add_argument("--cases", type=case_count, default=8, help="number of cases, at least 1 (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), default=None,
                        help="volume shape (default: " + ", ".join(
                            f"{name} {' '.join(map(str, shape))}" for name, shape in shapes.items()) + ")")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes identical files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    add_verbose_flag(parser)
    return parser


def case_count(text: str) -> int:
    """--cases: an integer of at least 1 (argparse reports anything else as a usage error)."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0: written; 2: a bad argument or an output folder that cannot be written (one line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(lambda: write_and_report(args), prog=parser.prog, verbose=args.verbose)


def write_and_report(args: argparse.Namespace) -> None:
    """Write the cases `args` describe and say where; the arguments are checked before the first file."""
    check_output_folder(args.out)
    try:
        root = write_synthetic_dataset(args.layout, args.out, args.cases, args.shape, args.seed)
    except DataArgumentError as error:
        raise DataArgumentError(f"{error} (pass a larger --shape)") from None
    print(f"wrote {args.cases} synthetic {args.layout} case(s) to {root}")


if __name__ == "__main__":
    raise SystemExit(main())
