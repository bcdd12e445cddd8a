"""The paper's published figures that the benchmarks print next to their own (docs/reference.md §13), one copy.

Memory: the paper writes "GB" without saying 10^9 or 2^30 bytes. GPU tools (nvidia-smi, torch.cuda) report
binary units, so the figures are read as GiB and compared with our GiB figures as printed; were they 10^9
bytes, each would be 7% smaller in GiB, far less than the ratios the benchmarks check.
Models are named as in the paper's Table 1 ("O-Net", "A"-"D") plus the two U-Net baselines.
"""
from __future__ import annotations

TABLE2_MODELS: tuple[str, ...] = ("unet3d", "unet2d", "O-Net", "A", "B", "C", "D")
TABLE2_DATASETS: tuple[str, ...] = ("brats", "lits")

# Paper Table 2, GPU memory in GiB (docs/reference.md §13.2): (model, dataset) -> (training at 2^14 locations,
# inference of 2^14 locations, inference of 2^17 locations). The U-Nets predict densely (3D) or per slice (2D),
# so their inference figure does not depend on the number of locations.
TABLE2_GIB: dict[tuple[str, str], tuple[float, float, float]] = {
    ("unet3d", "brats"): (14.41, 3.57, 3.57),
    ("unet2d", "brats"): (1.16, 0.46, 0.46),
    ("O-Net", "brats"): (2.35, 0.29, 1.93),
    ("A", "brats"): (2.58, 0.39, 2.73),
    ("B", "brats"): (2.76, 0.48, 3.45),
    ("C", "brats"): (2.59, 0.39, 2.73),
    ("D", "brats"): (2.76, 0.48, 3.46),
    ("unet3d", "lits"): (14.41, 3.57, 3.57),
    ("unet2d", "lits"): (4.29, 1.20, 1.20),
    ("O-Net", "lits"): (5.07, 1.47, 1.99),
    ("A", "lits"): (5.18, 1.50, 2.35),
    ("B", "lits"): (5.21, 1.53, 2.53),
    ("C", "lits"): (5.19, 1.51, 2.35),
    ("D", "lits"): (5.22, 1.53, 2.53),
}
# The 3D U-Net on LiTS at its native 512^3 grid: the paper states it would need more than this (§13.2).
UNET3D_LITS_NATIVE_TRAIN_GIB = 110.0

# Paper Fig. 6 left, OSS-Net C, seconds per volume read off the plot (approximate; §13.4):
# max points per chunk -> (standard coarse-to-fine refinement, refinement seeded by the encoder's prior).
FIG6_SECONDS: dict[int, tuple[float, float]] = {
    2**9: (9.0, 4.3),
    2**10: (7.1, 3.5),
    2**11: (6.2, 3.0),
    2**12: (5.8, 2.9),
    2**13: (5.7, 2.8),
    2**14: (5.4, 2.6),
}


def table2_gib(model: str, dataset: str) -> dict[str, float]:
    """The paper's Table-2 row for `model` on `dataset` as benchmark columns (unit in the names)."""
    if (model, dataset) not in TABLE2_GIB:
        raise KeyError(f"paper Table 2 has no row for model {model!r} on dataset {dataset!r}")
    train, infer_14, infer_17 = TABLE2_GIB[(model, dataset)]
    return {"paper_train_GiB": train, "paper_infer_2^14_GiB": infer_14, "paper_infer_2^17_GiB": infer_17}
