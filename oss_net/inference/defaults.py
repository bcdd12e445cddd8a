"""The one home of the inference defaults; the options, the predictor, the CLI, validation and the
benchmarks import them from here instead of restating the numbers.

Constants only. (Importing it loads `oss_net.inference`, whose module-level imports are io, data,
models, meshing, metrics and precision, so training may import it without a cycle.) The meshing
defaults (edge length, smallest component) live with the mesher in `oss_net.meshing.extract`.
"""
from __future__ import annotations

STAGES: tuple[int, ...] = (4, 2, 1)  # refinement strides, coarse to fine (the original's three stages)
CHUNK_SIZE = 2**14  # points decoded at once on a GPU (the original's max_coordinates)
# On the CPU: a chunk's gathered patches (C: 1024 x 4 x 343 fp32, 5.5 MiB) and each decoder layer's
# [1024, 512] fp32 activations (2 MiB) stay in cache from one step to the next; 2^14 points at once
# stream 32 MiB per layer, 1.3-1.6x slower (benchmarks/bench_decoder.py, benchmarks/bench_infer.py).
CPU_CHUNK_SIZE = 2**10
THRESHOLD = 0.5  # occupancy probability above which a voxel is foreground
MODE = "auto"  # prior with a segmentation head, standard without
REFINEMENT = "ours"  # candidate rule of the lattice (oss_net.inference.lattice); paper mode uses "original"
AMP = "off"  # autocast mode (oss_net.precision.AMP_MODES)
MESH_FORMAT: tuple[str, ...] = ("obj", "ply")  # files written per mesh
MESH_SPACE = "LPS"  # world frame of mesh vertices (3D Slicer, ITK); "RAS" for nibabel
