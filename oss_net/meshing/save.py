"""Writing meshes as .obj or .ply, atomically."""
from __future__ import annotations

import os
from pathlib import Path

import trimesh

from oss_net.io import atomic_write
from oss_net.meshing.errors import MeshingError

MESH_FORMATS = ("obj", "ply")


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write `mesh` to `path` in the format its suffix names (.obj text, .ply binary), atomically.

    Vertex coordinates are written as they are (mm for meshes from `extract_mesh` with an affine).
    An empty mesh is written too (a file without vertices: a comment-only .obj, a .ply with zero
    elements), so every case has its files. Returns the path.
    """
    target = Path(path)
    file_type = target.suffix.lower().lstrip(".")
    if file_type not in MESH_FORMATS:
        raise MeshingError(f"{target}: unknown mesh format {target.suffix!r}; use one of .obj, .ply")
    if file_type == "obj" and mesh.is_empty:
        data: str | bytes = "# empty mesh: no voxel above the level\n"  # trimesh would write bare "v"/"f" lines
    else:
        data = mesh.export(file_type=file_type)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_write(target, "wb") as handle:
        handle.write(payload)
    return target
