"""Writing meshes as .obj, .ply or .stl, atomically, with the coordinate frame named in the header.

nibabel's world frame is RAS (+x towards the patient's Right, +y Anterior, +z Superior), while
3D Slicer, ITK and DICOM use LPS (+x Left, +y Posterior). Slicer (since 4.11) reads a `SPACE=` comment in a mesh header and
takes a file without one as LPS, so a RAS mesh without the comment lands mirrored left–right and
front–back. We therefore write LPS by default (x and y of RAS negated) and always say which frame
a file is in: `# SPACE=LPS` in an OBJ, `comment SPACE=LPS` in a PLY header, `SPACE=LPS` in the STL
header text, as Slicer writes them. Negating two axes is a rotation by 180° about z (determinant
+1), so outward faces stay outward.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

from oss_net.io import atomic_write
from oss_net.meshing.errors import MeshingError

MESH_FORMATS = ("obj", "ply", "stl")
MESH_SPACES = ("LPS", "RAS")  # world frames a mesh in scanner mm can be written in
RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])  # its own inverse
STL_HEADER_BYTES = 80


def space_comment(file_type: str, space: str) -> bytes:
    """The header line naming the frame, in the spelling each format (and Slicer) uses."""
    if file_type == "obj":
        return f"# SPACE={space}\n".encode()
    if file_type == "ply":
        return f"comment SPACE={space}\n".encode()
    return f"SPACE={space}".encode().ljust(STL_HEADER_BYTES, b" ")


def mesh_bytes(mesh: trimesh.Trimesh, file_type: str, space: str | None) -> bytes:
    """The file content of `mesh` (vertices as given) with the `SPACE=` comment when `space` is set."""
    if file_type == "stl" and mesh.is_empty:
        body = bytes(STL_HEADER_BYTES) + (0).to_bytes(4, "little")  # binary STL with no triangle
    elif file_type == "obj" and mesh.is_empty:
        body = b"# empty mesh: no voxel above the level\n"  # trimesh would write bare "v"/"f" lines
    else:
        data = mesh.export(file_type=file_type)
        body = data.encode("utf-8") if isinstance(data, str) else data
    if space is None:
        return body
    comment = space_comment(file_type, space)
    if file_type == "obj":
        return comment + body
    if file_type == "ply":
        first, second, rest = body.split(b"\n", 2)  # "ply", "format ...", the remaining header and data
        return b"\n".join((first, second, comment + rest))
    return comment + body[STL_HEADER_BYTES:]


def mesh_in_space(mesh: trimesh.Trimesh, space: str) -> trimesh.Trimesh:
    """A mesh in nibabel's RAS scanner mm given in `space` ("LPS": x and y negated, a new mesh; "RAS": as it is)."""
    if space not in MESH_SPACES:
        raise MeshingError(f"unknown mesh space {space!r}; use one of {', '.join(MESH_SPACES)}")
    if space == "RAS" or mesh.is_empty:
        return mesh
    return trimesh.Trimesh(np.asarray(mesh.vertices) * RAS_TO_LPS, np.asarray(mesh.faces), process=False)


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike, space: str | None = "LPS") -> Path:
    """Write `mesh` to `path` in the format its suffix names (.obj text, .ply / .stl binary), atomically.

    Args:
        mesh: vertices in nibabel's RAS scanner mm (as `extract_mesh` gives with an affine), or in
            voxel indices for `space=None`.
        space: "LPS" (default: x and y negated, what Slicer expects), "RAS" (written as they are),
            each named in the header; None writes the vertices as they are without a comment (for
            meshes that are not in scanner mm).

    An empty mesh is written too (a comment-only .obj, a .ply with zero elements, an .stl with no
    triangle), so every case has its files. Returns the path.
    """
    target = Path(path)
    file_type = target.suffix.lower().lstrip(".")
    if file_type not in MESH_FORMATS:
        raise MeshingError(f"{target}: unknown mesh format {target.suffix!r}; use one of .obj, .ply, .stl")
    if space is not None and space not in MESH_SPACES:
        raise MeshingError(f"{target}: unknown mesh space {space!r}; use one of {', '.join(MESH_SPACES)}")
    payload = mesh_bytes(mesh_in_space(mesh, space or "RAS"), file_type, space)
    with atomic_write(target, "wb") as handle:
        handle.write(payload)
    return target
