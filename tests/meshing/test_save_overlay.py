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


def regions_volume() -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """An image [24, 20, 12] and nested WT ⊃ TC ⊃ ET boxes as label and (shifted by a voxel) prediction."""
    image = np.random.default_rng(1).normal(size=(24, 20, 12)).astype(np.float32)
    label = {name: np.zeros(image.shape, dtype=bool) for name in ("WT", "TC", "ET")}
    label["WT"][3:21, 3:17, 1:11] = True
    label["TC"][7:17, 6:14, 3:9] = True
    label["ET"][10:14, 8:12, 4:8] = True
    return image, label, {name: np.roll(mask, 1, axis=0) for name, mask in label.items()}


def colour_pixels(pixels: np.ndarray, colour: str) -> int:
    """How many pixels of an RGB(A) image [rows, columns, 3 or 4] in [0, 1] are (nearly) `colour`."""
    from matplotlib.colors import to_rgb

    return int((np.abs(pixels[..., :3] - np.asarray(to_rgb(colour))).max(axis=-1) < 0.05).sum())


def test_regions_overlay_outlines_each_region_in_its_colour_and_names_it(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from oss_net.meshing.overlay import CLASS_COLOURS, LABEL_COLOUR, PREDICTION_COLOUR, overlay_figure

    image, label, prediction = regions_volume()
    path = overlay_png(image, label, prediction, tmp_path / "regions.png", spacing=(1.0, 1.0, 2.0))
    pixels = imread(path)  # [440, 1200, 4], rows from the top
    assert pixels.shape[:2] == (440, 1200)
    slices, legend = pixels[:380], pixels[400:]  # the legend is the figure's bottom row
    for colour in CLASS_COLOURS[:3]:
        assert colour_pixels(slices, colour) > 100 and colour_pixels(legend, colour) > 20
    assert colour_pixels(pixels, CLASS_COLOURS[3]) == 0  # three regions, three colours
    assert colour_pixels(pixels, LABEL_COLOUR) == 0 and colour_pixels(pixels, PREDICTION_COLOUR) == 0

    figure = overlay_figure(image, label, prediction)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["WT", "TC", "ET"]
    styles = [(collection.get_edgecolor()[0][:3].tolist(), collection.get_linestyle()[0][1] is None)
              for collection in figure.axes[2].collections]  # (colour, solid) per outline, label first
    assert len(styles) == 6 and [solid for _, solid in styles] == [False, True] * 3
    assert styles[0][0] == styles[1][0] and len({tuple(colour) for colour, _ in styles}) == 3


def test_regions_overlay_takes_one_side_and_refuses_mismatched_classes(tmp_path: Path) -> None:
    from oss_net.meshing.overlay import overlay_figure

    image, label, prediction = regions_volume()
    legend = overlay_figure(image, None, prediction).legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["WT", "TC", "ET"]
    assert overlay_figure(image, label, prediction).get_suptitle() == "label (dashed), prediction (solid)"
    assert overlay_figure(image, None, prediction).get_suptitle() == "label (none), prediction (solid)"
    binary = overlay_figure(image, label["WT"], prediction["WT"]).legends[0]  # one mask each: both colours named
    assert [text.get_text() for text in binary.get_texts()] == ["label", "prediction"]
    assert [text.get_text() for text in overlay_figure(image, None, prediction["WT"]).legends[0].get_texts()] == [
        "prediction"]
    with pytest.raises(MeshingError, match="must both be masks or both be mappings"):
        overlay_png(image, label["WT"], prediction, tmp_path / "mixed.png")
    with pytest.raises(MeshingError, match=r"must name the same classes.*\('WT', 'TC', 'ET'\) and \('WT', 'TC'\)"):
        overlay_png(image, label, {"WT": prediction["WT"], "TC": prediction["TC"]}, tmp_path / "fewer.png")
    with pytest.raises(MeshingError, match=r"prediction 'ET' must have shape \(24, 20, 12\)"):
        overlay_png(image, label, {**prediction, "ET": prediction["ET"][:3]}, tmp_path / "bad.png")
    assert not any(tmp_path.iterdir())
