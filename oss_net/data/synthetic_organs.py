"""A synthetic FLARE21-style abdominal CT set with realistic relative organ sizes, for `make demo-organs`.

The FLARE21 layout (`oss_net.data.layouts.flare`: TrainingImg / TrainingMask / ValidationImg) with liver 1,
kidney 2, spleen 3, pancreas 4, placed in world millimetres on an oblique, anisotropic grid (as
`oss_net.data.synthetic_layouts`). Sizes follow adult anatomy: a liver of about 1.5 l, a spleen of about
200 ml, two kidneys of about 150 ml each (one label), and a small, thin pancreas of about 75 ml (some 30 mm
thick: a few voxels at the demo's spacing). The organs sit in a body of fat inside a wall of muscle, each a
smooth blob with a wobbly surface, in contrast-enhanced Hounsfield units (liver and spleen close, the
pancreas darker, the kidneys' cortex brightest). There is no bone: CT normalisation clips intensities to the
organs' 0.5–99.5 percentiles (nnU-Net's scheme, `oss_net.data.fingerprint`), after which a spine looks like
a kidney, which a demo-sized network, trained for minutes, could not tell apart. A seed always gives
identical bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from oss_net.data.synthetic import gaussian_smooth, smooth_noise
from oss_net.data.synthetic_layouts import oblique_affine, save_flare_case, world_grid

ORGANS_SHAPE = (72, 72, 40)  # voxels over ORGANS_EXTENT_MM: about 4.7 × 4.7 × 6 mm
ORGANS_EXTENT_MM = np.array([340.0, 340.0, 240.0])
# FLARE's label values, and per organ: world centre (mm, from the body's centre), radii (mm), HU, and the order in
# which overlaps are settled (smaller organs first, so a liver never swallows the pancreas next to it).
ORGAN_VALUES = {"liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
# The scanner's point spread (σ in voxels): organ edges mix with the fat around them, as in real CT. Without it
# the organs' 0.5th intensity percentile, where CT normalisation clips, sits inside the pancreas's own range
# (80 HU), the fat is clipped to it, and the pancreas is lost in the background (Dice 0 after 144 steps).
SCANNER_BLUR_VOXELS = 0.8
ORGAN_HU = {"liver": 130.0, "kidney": 195.0, "spleen": 150.0, "pancreas": 95.0}
LIVER = ((-65.0, -10.0, 35.0), (82.0, 62.0, 68.0))  # ≈ 1.45 l
SPLEEN = ((88.0, 40.0, 45.0), (26.0, 40.0, 48.0))  # ≈ 210 ml
KIDNEYS = (((-62.0, 62.0, -35.0), (25.0, 28.0, 52.0)), ((62.0, 62.0, -30.0), (25.0, 28.0, 52.0)))  # ≈ 150 ml each
PANCREAS = ((28.0, 20.0, -8.0), (72.0, 15.0, 17.0))  # ≈ 77 ml, 30 mm thick, tilted in the axial plane


def write_organs_dataset(out: str | Path, cases: int = 16, shape: Sequence[int] = ORGANS_SHAPE, seed: int = 0,
                         test_cases: int = 2) -> Path:
    """`cases` labelled and `test_cases` unlabelled FLARE21-layout cases under `out`; returns `out`."""
    root = Path(out)
    shape = tuple(int(s) for s in shape)
    for index in range(cases + test_cases):
        rng = np.random.default_rng([seed, 23, index])
        affine = oblique_affine(shape, ORGANS_EXTENT_MM * rng.uniform(0.95, 1.05, 3), rng)
        image, label = abdomen_ct(shape, affine, rng)
        save_flare_case(root, index, cases, image, label, affine)
    return root


def abdomen_ct(shape: Sequence[int], affine: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(CT in Hounsfield units int16, label uint8 with FLARE's organ values), each [D, H, W]."""
    world = world_grid(shape, affine)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    relative = world - centre.reshape(3, 1, 1, 1)  # [3, D, H, W] mm from the body's centre
    body = _blob(relative, (0.0, 10.0, 0.0), (150.0, 112.0, 1e4), 0.0, rng, 0.02)
    muscle = body & ~_blob(relative, (0.0, 10.0, 0.0), (132.0, 96.0, 1e4), 0.0, rng, 0.03)
    hounsfield = np.where(body, -90.0, -1000.0)  # fat inside the body
    hounsfield[muscle] = 45.0
    label = np.zeros(tuple(shape), dtype=np.uint8)
    for organ, (place, radii), angle in (("pancreas", PANCREAS, 0.35), ("kidney", KIDNEYS[0], 0.0),
                                         ("kidney", KIDNEYS[1], 0.0), ("spleen", SPLEEN, -0.3), ("liver", LIVER, 0.1)):
        jitter = rng.uniform(-6.0, 6.0, 3)
        mask = _blob(relative, np.add(place, jitter), np.multiply(radii, rng.uniform(0.9, 1.1, 3)),
                     angle + rng.uniform(-0.1, 0.1), rng, roughness=0.06) & body
        mask &= label == 0
        label[mask] = ORGAN_VALUES[organ]
        hounsfield[mask] = ORGAN_HU[organ]
    blurred = gaussian_smooth(hounsfield, SCANNER_BLUR_VOXELS)  # partial volume at every edge, as a scanner's PSF
    texture = 6.0 * smooth_noise(tuple(shape), rng, sigma=1.5)
    image = blurred + texture + rng.normal(0.0, 10.0, hounsfield.shape)
    return np.clip(image, -1024, 3071).astype(np.int16), label


def _blob(relative: np.ndarray, centre: Sequence[float], radii: Sequence[float], angle: float,
          rng: np.random.Generator, roughness: float) -> np.ndarray:
    """An ellipsoid at `centre` with `radii` (mm), turned by `angle` (radians) in the axial plane, its surface
    perturbed by smooth noise (`roughness` × radius). bool [D, H, W]"""
    x, y, z = (relative[a] - centre[a] for a in range(3))
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    distance = np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (z / radii[2]) ** 2)
    wobble = roughness * smooth_noise(distance.shape, rng, sigma=max(distance.shape) / 10) if roughness else 0.0
    return distance < 1.0 + wobble
