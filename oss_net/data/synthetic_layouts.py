"""Synthetic nnU-Net v2, Decathlon and FLARE21 datasets in their real layouts, for tests and examples.

Unlike the BraTS/LiTS generator (`oss_net.data.synthetic`), anatomy here is placed in world (mm)
coordinates and each scan's voxel grid is oblique (rotated about two axes) and anisotropic, so a
reader that ignores the affine sees tilted organs; the label stays the same object on any grid.

- nnunet: multi-channel MRI (FLAIR, T1, T2) of a brain with a tumour (oedema 1 ⊃ core 2 ⊃ enhancing
  rim 3); ``labels`` as nnU-Net regions (whole tumour [1, 2, 3], core [2, 3], enhancing [3]) or plain.
- msd: "mri" = a 4-D two-modality tumour task (like Task01); "ct" = a 3-D single-CT liver task (like Task03).
- flare: abdominal CT with liver 1, kidney 2, spleen 3, pancreas 4 as separate labels.

Everything depends only on the seed; the gzip streams carry no timestamp, so a seed gives identical bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from oss_net.data.errors import DataArgumentError
from oss_net.data.formats import save_image
from oss_net.data.layouts.flare import FLARE_IMAGES, FLARE_MASKS, FLARE_TEST
from oss_net.io import atomic_save_json

LAYOUT_SHAPES = {"nnunet": (32, 28, 20), "msd": (28, 28, 20), "flare": (32, 32, 16)}
NNUNET_FOLDER = "Dataset901_SynthTumour"
MSD_FOLDERS = {"mri": "Task01_SynthTumour", "ct": "Task03_SynthLiver"}
NNUNET_CHANNELS = ("FLAIR", "T1", "T2")
# Mean intensity per tissue (background, brain, oedema, core, enhancing rim) for each MRI channel.
MRI_CONTRAST = {"FLAIR": (0.0, 400.0, 1000.0, 750.0, 800.0), "T1": (0.0, 600.0, 420.0, 230.0, 500.0),
                "T2": (0.0, 380.0, 920.0, 1050.0, 700.0), "T1w": (0.0, 600.0, 420.0, 230.0, 500.0)}
# Hounsfield units of the abdominal organs (FLARE label order) and of the body around them.
ORGAN_HU = {"liver": 120.0, "kidney": 180.0, "spleen": 100.0, "pancreas": 80.0}


def write_layout_dataset(layout: str, out: str | Path, cases: int = 4, shape: Sequence[int] | None = None,
                         seed: int = 0, test_cases: int = 1) -> Path:
    """Write `cases` labelled and `test_cases` unlabelled synthetic cases in `layout`; returns the dataset's root.

    nnunet: ``out/Dataset901_SynthTumour``; msd: ``out/Task01_SynthTumour`` (4-D MRI); flare: `out` itself.
    """
    if layout not in LAYOUT_SHAPES:
        raise DataArgumentError(f"layout must be one of {', '.join(LAYOUT_SHAPES)}, got {layout!r}")
    shape = tuple(int(s) for s in (shape or LAYOUT_SHAPES[layout]))
    if len(shape) != 3 or min(shape) < 8:
        raise DataArgumentError(f"shape must be three sizes ≥ 8, got {shape}")
    if layout == "nnunet":
        return write_nnunet_dataset(out, cases, shape, seed, test_cases=test_cases)
    if layout == "msd":
        return write_msd_dataset(out, cases, shape, seed, kind="mri", test_cases=test_cases)
    return write_flare_dataset(out, cases, shape, seed, test_cases=test_cases)


def write_nnunet_dataset(out: str | Path, cases: int, shape: Sequence[int], seed: int = 0, regions: bool = True,
                         test_cases: int = 1, file_ending: str = ".nii.gz") -> Path:
    """An nnU-Net v2 raw dataset: imagesTr/<case>_000{0,1,2}, labelsTr, imagesTs and dataset.json; its images in
    the format of `file_ending` (`oss_net.io.IMAGE_SUFFIXES`; the same voxels and grids for a seed in any)."""
    root = Path(out) / NNUNET_FOLDER
    for index in range(cases + test_cases):
        rng = np.random.default_rng([seed, index])
        affine = oblique_affine(shape, np.array([160.0, 200.0, 180.0]), rng)
        tissue, label = brain_tumour(shape, affine, rng)
        labelled = index < cases
        case_id = f"case_{index:03d}"
        for channel, name in enumerate(NNUNET_CHANNELS):
            image = mri_channel(tissue, name, rng)
            folder = root / ("imagesTr" if labelled else "imagesTs")
            save_nifti(image, affine, folder / f"{case_id}_{channel:04d}{file_ending}")
        if labelled:
            save_nifti(label, affine, root / "labelsTr" / f"{case_id}{file_ending}")
    labels = ({"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]} if regions
              else {"background": 0, "oedema": 1, "tumour core": 2, "enhancing tumour": 3})
    record = {"name": NNUNET_FOLDER, "channel_names": {str(i): n for i, n in enumerate(NNUNET_CHANNELS)},
              "labels": labels, "numTraining": cases, "file_ending": file_ending}
    if regions:
        record["regions_class_order"] = [1, 2, 3]  # nnU-Net paints the regions in the order of "labels"
    atomic_save_json(record, root / "dataset.json", sort_keys=False)
    return root


def write_msd_dataset(out: str | Path, cases: int, shape: Sequence[int], seed: int = 0, kind: str = "mri",
                      test_cases: int = 1) -> Path:
    """A Decathlon task: "mri" 4-D FLAIR + T1w tumour images, or "ct" 3-D liver (1) + cancer (2) CT images."""
    if kind not in MSD_FOLDERS:
        raise ValueError(f"kind must be 'mri' or 'ct', got {kind!r}")
    root = Path(out) / MSD_FOLDERS[kind]
    prefix = "tumour" if kind == "mri" else "liver"
    training, test = [], []
    for index in range(cases + test_cases):
        rng = np.random.default_rng([seed, index])
        name = f"{prefix}_{index:03d}.nii.gz"
        if kind == "mri":
            affine = oblique_affine(shape, np.array([160.0, 200.0, 180.0]), rng)
            tissue, label = brain_tumour(shape, affine, rng)
            image = np.stack([mri_channel(tissue, m, rng) for m in ("FLAIR", "T1w")], axis=-1)  # [D, H, W, 2]
            label = np.minimum(label, 2).astype(np.uint8)  # oedema 1, tumour (core and rim) 2
        else:
            affine = oblique_affine(shape, np.array([300.0, 300.0, 240.0]), rng)
            image, organs = abdomen(shape, affine, rng, organs=("liver",))
            label = organs.copy()
            label[(organs == 1) & ellipsoid(world_grid(shape, affine), _inside(organs == 1, affine, rng), 25.0)] = 2
        labelled = index < cases
        save_nifti(image, affine, root / ("imagesTr" if labelled else "imagesTs") / name)
        if labelled:
            save_nifti(label, affine, root / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            test.append(f"./imagesTs/{name}")
    modality = {"0": "FLAIR", "1": "T1w"} if kind == "mri" else {"0": "CT"}
    labels = ({"0": "background", "1": "oedema", "2": "tumour"} if kind == "mri"
              else {"0": "background", "1": "liver", "2": "cancer"})
    atomic_save_json({"name": MSD_FOLDERS[kind], "tensorImageSize": "4D" if kind == "mri" else "3D",
                      "modality": modality, "labels": labels, "numTraining": cases, "numTest": test_cases,
                      "training": training, "test": test}, root / "dataset.json")
    return root


def write_flare_dataset(out: str | Path, cases: int, shape: Sequence[int], seed: int = 0, test_cases: int = 1) -> Path:
    """FLARE21 under `out`: TrainingImg/train_NNN_0000, TrainingMask/train_NNN, ValidationImg/validation_NNN_0000."""
    root = Path(out)
    for index in range(cases + test_cases):
        rng = np.random.default_rng([seed, index])
        affine = oblique_affine(shape, np.array([300.0, 300.0, 240.0]), rng)
        image, label = abdomen(shape, affine, rng, organs=tuple(ORGAN_HU))
        save_flare_case(root, index, cases, image, label, affine)
    return root


def save_flare_case(root: Path, index: int, cases: int, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
    """Case `index` of a synthetic FLARE21 set: a labelled training case below `cases`, else an unlabelled
    ValidationImg one (its label is not written)."""
    if index < cases:
        save_nifti(image, affine, root / FLARE_IMAGES / f"train_{index:03d}_0000.nii.gz")
        save_nifti(label, affine, root / FLARE_MASKS / f"train_{index:03d}.nii.gz")
    else:
        save_nifti(image, affine, root / FLARE_TEST / f"validation_{index - cases:03d}_0000.nii.gz")


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write an image file atomically (NIfTI, or the format `path`'s suffix names: `save_image`), creating its
    folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(array, affine, path)


def oblique_affine(shape: Sequence[int], extent_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 4×4 affine whose grid spans `extent_mm`, rotated 10–20° about z and 5–10° about x, centred near 0.

    The spacing extent/shape differs per axis (anisotropic) whenever the ratios differ.
    """
    spacing = extent_mm / np.asarray(shape, dtype=np.float64)
    about_z, about_x = np.deg2rad(rng.uniform(10.0, 20.0)), np.deg2rad(rng.uniform(5.0, 10.0))
    rotate_z = np.array([[np.cos(about_z), -np.sin(about_z), 0], [np.sin(about_z), np.cos(about_z), 0], [0, 0, 1]])
    rotate_x = np.array([[1, 0, 0], [0, np.cos(about_x), -np.sin(about_x)], [0, np.sin(about_x), np.cos(about_x)]])
    affine = np.eye(4)
    affine[:3, :3] = rotate_z @ rotate_x @ np.diag(spacing)
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    affine[:3, 3] = rng.uniform(-20.0, 20.0, 3) - affine[:3, :3] @ centre
    return affine


def world_grid(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World (mm) position of every voxel centre, `[3, D, H, W]`."""
    index = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    return np.einsum("ij,j...->i...", affine[:3, :3], index) + affine[:3, 3].reshape(3, 1, 1, 1)


def ellipsoid(world: np.ndarray, centre: np.ndarray, radii: np.ndarray | float) -> np.ndarray:
    """Voxels inside a world-axis-aligned ellipsoid, `[D, H, W]` bool."""
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (3,))
    return sum(((world[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) < 1.0


def brain_tumour(shape: Sequence[int], affine: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(tissue 0 background … 4 enhancing rim, label 0/1 oedema/2 core/3 enhancing), both `[D, H, W]`."""
    world = world_grid(shape, affine)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    brain = ellipsoid(world, centre, np.array([70.0, 80.0, 55.0]))
    tumour_centre = centre + rng.uniform(-20.0, 20.0, 3)
    oedema = ellipsoid(world, tumour_centre, rng.uniform(32.0, 42.0, 3)) & brain
    core = ellipsoid(world, tumour_centre + rng.normal(0.0, 3.0, 3), rng.uniform(18.0, 25.0, 3)) & oedema
    rim = core & ~ndimage.binary_erosion(core)
    label = np.zeros(tuple(shape), dtype=np.uint8)
    label[oedema], label[core], label[rim] = 1, 2, 3
    tissue = np.where(label > 0, label + 1, brain.astype(np.uint8))
    return tissue, label


def mri_channel(tissue: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """One MRI contrast of a tissue map with noise inside the head, int16."""
    image = np.asarray(MRI_CONTRAST[name])[tissue] + rng.normal(0.0, 30.0, tissue.shape) * (tissue > 0)
    return np.clip(image, 0, None).astype(np.int16)


def abdomen(shape: Sequence[int], affine: np.ndarray, rng: np.random.Generator,
            organs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(CT in Hounsfield units int16, label with organs numbered 1.. in `organs` order uint8), `[D, H, W]` each."""
    world = world_grid(shape, affine)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    places = {"liver": ([-50.0, -10.0, 10.0], [55.0, 45.0, 50.0]), "spleen": ([70.0, 20.0, 20.0], [25.0, 30.0, 35.0]),
              "kidney": ([45.0, 55.0, -30.0], [22.0, 22.0, 35.0]),
              "pancreas": ([10.0, 10.0, -10.0], [45.0, 18.0, 20.0])}
    hounsfield = np.full(tuple(shape), -1000.0)
    hounsfield[ellipsoid(world, centre, np.array([135.0, 100.0, 400.0]))] = 30.0
    label = np.zeros(tuple(shape), dtype=np.uint8)
    for value, organ in enumerate(organs, start=1):
        offset, radii = (np.asarray(v) for v in places[organ])
        mask = ellipsoid(world, centre + offset + rng.uniform(-6.0, 6.0, 3), radii * rng.uniform(0.9, 1.1, 3))
        label[mask & (label == 0)] = value
        hounsfield[mask] = ORGAN_HU[organ]
    image = hounsfield + rng.normal(0.0, 15.0, hounsfield.shape)
    return np.clip(image, -1024, 3071).astype(np.int16), label


def _inside(mask: np.ndarray, affine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """World position of a random voxel of `mask` (where a lesion is planted)."""
    voxels = np.argwhere(mask)
    return affine[:3, :3] @ voxels[rng.integers(len(voxels))] + affine[:3, 3]

