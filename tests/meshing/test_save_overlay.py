"""save_mesh round trips and atomicity; overlay_png writes a PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from oss_net.meshing import MeshingError, extract_mesh, overlay_png, save_mesh


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_mesh_round_trip(tmp_path: Path, suffix: str) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=12.5)
    mesh.apply_translation((-90.25, 120.5, 33.0))  # scanner-mm sized coordinates
    path = save_mesh(mesh, tmp_path / f"prediction{suffix}")
    loaded = trimesh.load(path, process=False, force="mesh")
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-4)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    assert loaded.is_watertight
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"prediction{suffix}"]  # no temp file left


def test_empty_mesh_is_saved(tmp_path: Path) -> None:
    empty = extract_mesh(np.zeros((4, 4, 4)), None)
    obj = save_mesh(empty, tmp_path / "empty.obj")
    ply = save_mesh(empty, tmp_path / "empty.ply")
    assert not any(line.startswith(("v", "f")) for line in obj.read_text().splitlines())
    assert b"element vertex 0" in ply.read_bytes()


def test_save_errors(tmp_path: Path) -> None:
    mesh = trimesh.creation.icosphere(subdivisions=0)
    with pytest.raises(MeshingError, match=r"mesh\.stl: unknown mesh format '\.stl'"):
        save_mesh(mesh, tmp_path / "mesh.stl")
    with pytest.raises(Exception, match="does not exist"):
        save_mesh(mesh, tmp_path / "missing" / "mesh.obj")


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
