"""save_mesh round trips in LPS / RAS / voxel frames, header comments, atomicity; overlay_png writes a PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from oss_net.meshing import MESH_FORMATS, MeshingError, extract_mesh, overlay_png, save_mesh


def load(path: Path) -> trimesh.Trimesh:
    """A saved mesh as trimesh reads it (STL stores each triangle's corners: merged on loading)."""
    return trimesh.load(path, process=path.suffix == ".stl", force="mesh")


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl"])
@pytest.mark.parametrize("space", ["LPS", "RAS", None])
def test_mesh_round_trip_in_each_space(tmp_path: Path, suffix: str, space: str | None) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=12.5)
    mesh.apply_translation((-90.25, 120.5, 33.0))  # scanner-mm sized coordinates, RAS
    path = save_mesh(mesh, tmp_path / f"prediction{suffix}", space=space)
    loaded = load(path)
    flip = np.array([-1.0, -1.0, 1.0]) if space == "LPS" else np.ones(3)  # LPS: x and y of RAS negated
    if suffix == ".stl":  # triangles only: the vertices come back merged, in another order
        np.testing.assert_allclose(np.sort(loaded.vertices * flip, axis=0), np.sort(mesh.vertices, axis=0), atol=1e-4)
    else:
        np.testing.assert_allclose(loaded.vertices * flip, mesh.vertices, atol=1e-4)
        np.testing.assert_array_equal(loaded.faces, mesh.faces)
    assert loaded.is_watertight
    assert loaded.volume == pytest.approx(mesh.volume, rel=1e-4)  # signed: negating two axes keeps faces outward
    header = path.read_bytes()[:200]
    if space is None:
        assert b"SPACE=" not in header
    else:
        comment = {".obj": b"# SPACE=", ".ply": b"\ncomment SPACE=", ".stl": b"SPACE="}[suffix] + space.encode()
        assert comment in header and (suffix != ".stl" or header.startswith(comment))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"prediction{suffix}"]  # no temp file left


def test_empty_mesh_is_saved(tmp_path: Path) -> None:
    empty = extract_mesh(np.zeros((4, 4, 4)), None)
    obj = save_mesh(empty, tmp_path / "empty.obj")
    ply = save_mesh(empty, tmp_path / "empty.ply")
    stl = save_mesh(empty, tmp_path / "empty.stl")
    assert not any(line.startswith(("v", "f")) for line in obj.read_text().splitlines())
    assert obj.read_text().startswith("# SPACE=LPS\n")
    assert b"element vertex 0" in ply.read_bytes() and b"comment SPACE=LPS" in ply.read_bytes()
    assert len(stl.read_bytes()) == 84 and stl.read_bytes()[80:] == bytes(4)  # header + zero triangles
    assert load(stl).is_empty


def test_save_errors(tmp_path: Path) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=0)
    with pytest.raises(MeshingError, match=r"mesh\.off: unknown mesh format '\.off'"):
        save_mesh(mesh, tmp_path / "mesh.off")
    with pytest.raises(MeshingError, match=r"mesh\.obj: unknown mesh space 'XYZ'"):
        save_mesh(mesh, tmp_path / "mesh.obj", space="XYZ")
    with pytest.raises(Exception, match="does not exist"):
        save_mesh(mesh, tmp_path / "missing" / "mesh.obj")
    assert MESH_FORMATS == ("obj", "ply", "stl")


def test_overlay_writes_png(tmp_path: Path) -> None:
    image = np.random.default_rng(0).normal(size=(20, 18, 10)).astype(np.float32)
    label = np.zeros(image.shape, dtype=np.uint8)
    label[5:12, 4:10, 2:7] = 1
    prediction = np.roll(label, 1, axis=0)
    path = overlay_png(image, label, prediction, tmp_path / "case.png", spacing=(1.0, 1.0, 2.0))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 440)
    assert overlay_png(image, None, None, tmp_path / "bare.png").stat().st_size > 0
    with pytest.raises(MeshingError, match=r"prediction must have shape \(20, 18, 10\)"):
        overlay_png(image, label, prediction[:5], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
