"""The one home of the inference defaults; the predictor, the runner, the CLI, validation and the
benchmarks import them from here instead of restating the numbers.

Constants only. (Importing it loads `oss_net.inference`, whose module-level imports are io, data,
models and precision, so training may import it without a cycle.) The meshing defaults (face
budget, smallest component) live with the mesher in `oss_net.meshing.extract`.
"""
from __future__ import annotations

STAGES: tuple[int, ...] = (4, 2, 1)  # refinement strides, coarse to fine (the original's three stages)
CHUNK_SIZE = 2**14  # points decoded at once on a GPU (the original's max_coordinates)
# On the CPU: a chunk's gathered patches (C: 4096 x 4 x 343 fp32, 22 MiB) stay in the last-level cache
# until the decoder reads them; a whole-scan prior run is ~1.2x faster than with 2^14 (benchmarks/bench_infer.py).
CPU_CHUNK_SIZE = 2**12
THRESHOLD = 0.5  # occupancy probability above which a voxel is foreground
MODE = "auto"  # prior with a segmentation head, standard without
REFINEMENT = "ours"  # candidate rule of the lattice (oss_net.inference.refine); paper mode uses "original"
