"""The Python API (`oss_net.Segmenter`): the README's example runs as written; every kind of input gives back its own
kind on its own grid, with the labels `oss-net-predict` writes; bad input is refused with a message."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import oss_net
from oss_net.datasets import DatasetError
from oss_net.inference import InferenceError, predict_files
from oss_net.models import save_model
from tests.data.image_helpers import geometry

from .conftest import intensity_model

ROOT = Path(__file__).resolve().parents[2]


def readme_api_block() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def ball_scan(path: Path, radius: float, seed: int) -> None:
    """A CT-like scan [40, 40, 24] holding one bright ball of `radius` voxels (about a tenth of the volume, so the
    intensity model finds it whole), on an oblique 0.8 × 0.8 × 2.5 mm grid."""
    rng = np.random.default_rng(seed)
    grid = np.indices((40, 40, 24)).astype(np.float32)
    centre = np.array([20.0, 19.0, 12.0])[:, None, None, None] + rng.uniform(-2, 2, (3, 1, 1, 1))
    inside = (((grid - centre) * np.array([1.0, 1.0, 2.5])[:, None, None, None] / radius) ** 2).sum(0) < 1
    volume = (40.0 * inside + rng.normal(0.0, 1.0, inside.shape)).astype(np.int16)
    angle = 0.2
    affine = np.array([[0.8 * np.cos(angle), -0.8 * np.sin(angle), 0, -20], [0.8 * np.sin(angle), 0.8 * np.cos(angle), 0, 10],
                       [0, 0, 2.5, -30], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume, affine), str(path))


@pytest.fixture
def readme_folder(tmp_path, monkeypatch) -> Path:
    """What the README example names: model.pt (a LiTS model), scan.nii.gz and scans/ with two more scans."""
    save_model(tmp_path / "model.pt", intensity_model("C", "lits", volume_shape=(32, 32, 32)))
    ball_scan(tmp_path / "scan.nii.gz", 14.0, seed=0)
    (tmp_path / "scans").mkdir()
    for number in (1, 2):
        ball_scan(tmp_path / "scans" / f"liver{number}.nii.gz", 11.0 + number, seed=number)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_example_runs(readme_folder, capsys):
    code = readme_api_block()
    assert 8 <= len(code.strip().splitlines()) <= 14
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "readme"})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == "(40, 40, 24) ['foreground']" and lines[1] == "True"
    assert [line.split()[0] for line in lines[2:]] == ["liver1", "liver2"] and all(int(l.split()[1]) > 0 for l in lines[2:])
    assert (readme_folder / "scan.ply").read_bytes().startswith(b"ply") and b"element face 0" not in (
        readme_folder / "scan.ply").read_bytes()


def test_import_stays_cheap_until_the_api_is_used():
    code = "import sys, oss_net; assert 'torch' not in sys.modules; oss_net.Segmenter; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert "Segmenter" in dir(oss_net)
    with pytest.raises(AttributeError, match="no attribute 'Segmentor'"):
        oss_net.Segmentor  # noqa: B018


def test_every_kind_of_input_gives_its_own_kind_on_its_own_grid(readme_folder):
    segmenter = oss_net.Segmenter("model.pt", device="cpu")
    written = predict_files(["scan.nii.gz"], readme_folder.parent / f"{readme_folder.name}_out", "model.pt", cpu=True)[0]
    expected = np.asarray(nib.load(str(written)).dataobj)  # what oss-net-predict writes: one pipeline
    image = nib.load("scan.nii.gz")
    from_nifti = segmenter.segment(image)
    assert isinstance(from_nifti.labels, nib.Nifti1Image) and np.array_equal(from_nifti.labels.affine, image.affine)
    assert np.array_equal(np.asarray(from_nifti.labels.dataobj), expected)
    itk = sitk.ReadImage("scan.nii.gz")
    from_itk = segmenter.segment(itk)
    assert isinstance(from_itk.labels, sitk.Image) and geometry(from_itk.labels) == geometry(itk)
    assert np.array_equal(sitk.GetArrayFromImage(from_itk.labels).transpose(2, 1, 0), expected)
    probability = from_itk.probabilities["foreground"]
    assert probability.GetPixelIDTypeAsString() == "32-bit float" and geometry(probability) == geometry(itk)
    array = sitk.GetArrayFromImage(itk).transpose(2, 1, 0)
    from_array = segmenter.segment(array, spacing=itk.GetSpacing(), origin=itk.GetOrigin(), direction=itk.GetDirection())
    assert np.array_equal(from_array.labels, expected) and from_array.probabilities["foreground"].dtype == np.float32
    sitk.WriteImage(itk, "scan.nrrd")
    from_path = segmenter.segment("scan.nrrd", meshes=True, mesh_space="RAS")
    assert isinstance(from_path.labels, sitk.Image) and geometry(from_path.labels) == geometry(sitk.ReadImage("scan.nrrd"))
    lps = segmenter.segment("scan.nrrd", meshes=True).meshes["foreground"]
    ras = from_path.meshes["foreground"]
    assert len(ras.faces) and np.allclose(lps.vertices, ras.vertices * [-1, -1, 1])


def test_a_meta_tensor_like_array_and_several_channels(readme_folder, synthetic_brats_root):
    class WithAffine(np.ndarray):  # stands for MONAI's MetaTensor: the array carries its RAS affine
        affine: np.ndarray

    image = nib.load("scan.nii.gz")
    carried = np.asarray(image.dataobj, dtype=np.float32).view(WithAffine)
    carried.affine = image.affine
    segmenter = oss_net.Segmenter("model.pt", device="cpu")
    assert np.array_equal(segmenter.segment(carried).labels, np.asarray(segmenter.segment(image).labels.dataobj))
    save_model(readme_folder / "brats.pt", intensity_model("C"))
    brats = oss_net.Segmenter("brats.pt", device="cpu")
    case = sorted((synthetic_brats_root / "MICCAI_BraTS2020_TrainingData").iterdir())[0]
    files = [case / f"{case.name}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")]
    channels = np.stack([np.asarray(nib.load(str(f)).dataobj) for f in files])  # [C, i, j, k], MONAI's order
    from_array = brats.segment(channels, affine=nib.load(str(files[0])).affine)
    from_folder = brats.segment(case)
    assert np.array_equal(from_array.labels, np.asarray(from_folder.labels.dataobj)) and from_array.labels.any()


def test_bad_input_is_refused_with_a_message(readme_folder):
    segmenter = oss_net.Segmenter("model.pt", device="cpu")
    volume = np.asarray(nib.load("scan.nii.gz").dataobj)
    with pytest.raises(InferenceError, match="an array needs its geometry: affine="):
        segmenter.segment(volume)
    with pytest.raises(InferenceError, match="give the array's geometry once"):
        segmenter.segment(volume, np.eye(4), spacing=(1, 1, 1))
    with pytest.raises(DatasetError, match="image: 2 channel\\(s\\) given but the model expects 1"):
        segmenter.segment(np.stack([volume, volume]), affine=np.eye(4))
    bad = volume.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match=r"<array>: image contains 1 NaN or Inf voxel"):
        segmenter.segment(bad, affine=np.eye(4))
    with pytest.raises(DatasetError, match=r"<array>: affine is singular"):
        segmenter.segment(volume, affine=np.diag([1.0, 0.0, 1.0, 1.0]))
    shutil.copy("scan.nii.gz", readme_folder / "scans" / "liver3.nii.gz")
    with pytest.raises(InferenceError, match="holds 3 cases; segment_many segments each of them"):
        segmenter.segment("scans")
    with pytest.raises(InferenceError, match="mode 'fast' is not one of"):
        oss_net.Segmenter("model.pt", mode="fast")
