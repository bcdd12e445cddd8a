"""Meshes from occupancy grids in scanner mm, their gradient refinement, saving, and slice overlays.

`extract_mesh` (grid → closed, decimated mesh), `refine_vertices` (reference §8.3, through a
differentiable occupancy function), `save_mesh` (.obj / .ply, atomic) and `overlay_png` (three
orthogonal slices with label and prediction outlined).
"""
from __future__ import annotations

from oss_net.meshing.decimate import close_defects, decimate
from oss_net.meshing.errors import MeshingError
from oss_net.meshing.extract import extract_mesh, remove_small_components
from oss_net.meshing.overlay import overlay_png
from oss_net.meshing.refine import refine_vertices, refinement_loss
from oss_net.meshing.save import MESH_FORMATS, save_mesh

__all__ = [
    "MESH_FORMATS",
    "MeshingError",
    "close_defects",
    "decimate",
    "extract_mesh",
    "overlay_png",
    "refine_vertices",
    "refinement_loss",
    "remove_small_components",
    "save_mesh",
]
