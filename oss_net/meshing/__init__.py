"""Meshes from occupancy grids in scanner mm, their gradient refinement, saving, and slice overlays.

`extract_mesh` (grid → closed, decimated mesh), `refine_vertices` (docs/reference.md §8.3, through a
differentiable occupancy function), `save_mesh` (.obj / .ply / .stl, atomic, LPS or RAS named in the header) and `overlay_png` (three
orthogonal slices with label and prediction outlined).
"""
from __future__ import annotations

from oss_net.meshing.decimate import close_defects, decimate, face_budget_for_edge
from oss_net.meshing.errors import MeshingError
from oss_net.meshing.extract import MESH_EDGE_MM, MIN_COMPONENT_VOXELS, extract_mesh, remove_small_components
from oss_net.meshing.overlay import overlay_png
from oss_net.meshing.refine import refine_vertices, refinement_loss
from oss_net.meshing.save import MESH_FORMATS, MESH_SPACES, mesh_in_space, save_mesh

__all__ = [
    "MESH_EDGE_MM",
    "MESH_FORMATS",
    "MESH_SPACES",
    "MIN_COMPONENT_VOXELS",
    "MeshingError",
    "close_defects",
    "decimate",
    "extract_mesh",
    "face_budget_for_edge",
    "mesh_in_space",
    "overlay_png",
    "refine_vertices",
    "refinement_loss",
    "remove_small_components",
    "save_mesh",
]
