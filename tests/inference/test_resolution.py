"""Any resolution (issue 28): the decoder queried between voxel centres, with the patches interpolated there."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
import trimesh
from torch import nn

from oss_net.data import PatchSource
from oss_net.geometry import grid_at_spacing
from oss_net.models import Encoding, OSSNetConfig, build_model, demo_config, register_model, save_model
from oss_net.predict import main as predict_main


def _decoder_of(config, volume):
    """(model in eval mode, its encoding of `volume [1, C, *S]` with the decoder folded as the predictor folds it,
    the case's patch source)."""
    model = build_model(config).eval()
    with torch.no_grad():
        encoding = model.fold(model.encode(volume))
    return model, encoding, PatchSource(volume, large=config.large_patches)


def test_integer_queries_decode_byte_identically_as_float_or_int_alone_or_among_fractional_ones():
    torch.manual_seed(0)
    config = demo_config("D", "brats", volume_shape=(16, 16, 12), encoder_channels=((4, 8),), decoder_width=16)
    volume = torch.randn(1, config.in_channels, *config.volume_shape)
    model, encoding, source = _decoder_of(config, volume)
    lattice = torch.stack(torch.meshgrid(*[torch.arange(0, n, 3) for n in config.volume_shape], indexing="ij"), -1)
    integer = lattice.reshape(1, -1, 3)  # [1, N, 3] int64: today's lattice queries
    mixed = torch.cat([integer.float(), integer.float() + 0.37], dim=1)  # the same points, then fractional ones
    with torch.no_grad():
        today = model.decode(integer, encoding, source.gather(integer))
        as_float = model.decode(integer.float(), encoding, source.gather(integer.float()))
        among = torch.cat([model.decode(part, encoding, source.gather(part))  # two calls, as two refinement chunks
                           for part in mixed.split(integer.shape[1], dim=1)], dim=1)
    assert torch.equal(today, as_float) and torch.equal(today, among[:, :integer.shape[1]])
    assert not torch.equal(among[:, integer.shape[1]:], today)


def test_a_query_moving_across_a_voxel_boundary_changes_continuously():
    """Nearest-voxel patches would jump where the query passes half-way between voxel centres; interpolated ones do not."""
    torch.manual_seed(1)
    config = demo_config("C", "brats", volume_shape=(16, 16, 12), encoder_channels=((4, 8),), decoder_width=16)
    volume = torch.randn(1, config.in_channels, *config.volume_shape, dtype=torch.float64)
    model = build_model(config).double().eval()
    source = PatchSource(volume, large=config.large_patches)
    steps = torch.linspace(0, 1, 201, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    path = (torch.tensor([7.0, 8.0, 5.0], dtype=torch.float64) + steps)[None]  # [1, 201, 3]: crosses 7.5 and 8.5
    with torch.no_grad():
        encoding = model.encode(volume)
        values = model.decode(path, encoding, source.gather(path))[0, :, 0]  # [201]
        nearest = model.decode(path, encoding, source.gather(path.round()))[0, :, 0]
    change = values.diff().abs()
    assert change.max() < 10 * change.median() and float(values.max() - values.min()) > 0
    jumps = nearest.diff().abs()
    assert jumps.max() > 10 * jumps.median()  # what the test tells apart


# ------------------------------------------------------------------ outputs at any spacing (--output_spacing)

SPHERE_KIND = "test_analytic_sphere"
CASE_SHAPE = (30, 30, 20)  # voxels of 2 mm, padded onto the demo's 64×64×40 model grid
CASE_AFFINE = np.array([[-2.0, 0, 0, 31.0], [0, -2.0, 0, 29.0], [0, 0, 2.0, -17.0], [0, 0, 0, 1]])
SPHERE_CENTRE_MM = np.array([6.3, 3.1, 2.7])  # world (RAS) mm
SPHERE_RADIUS_MM = 9.3


class AnalyticSphere(nn.Module):
    """An oracle in the OSSNet interface: the occupancy of a sphere in world mm at any model-grid coordinate
    (the case's pad undone through its affine), a soft step 1 mm wide; its segmentation head the same sphere,
    max-pooled. No patches: only the geometry is under test."""

    kind = SPHERE_KIND

    def __init__(self, config: OSSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.dummy = nn.Parameter(torch.zeros(()))
        pad = np.ceil((np.asarray(config.volume_shape) - CASE_SHAPE) / 2)
        self.register_buffer("to_mm", torch.from_numpy(CASE_AFFINE[:3, :3]), persistent=False)
        self.register_buffer("origin", torch.from_numpy(CASE_AFFINE[:3, 3] - CASE_AFFINE[:3, :3] @ pad), persistent=False)

    def inside(self, coords: torch.Tensor) -> torch.Tensor:  # [..., 3] model grid -> [...] probability
        world = coords.double() @ self.to_mm.double().T + self.origin.double()
        return torch.sigmoid(4.0 * (SPHERE_RADIUS_MM - (world - torch.from_numpy(SPHERE_CENTRE_MM)).norm(dim=-1)))

    def encode(self, volume: torch.Tensor) -> Encoding:
        grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in self.config.volume_shape], indexing="ij"), -1)
        inside = self.inside(grid).float()[None, None].expand(volume.shape[0], -1, -1, -1, -1)
        latents = volume.new_zeros(volume.shape[0], self.config.number_of_latents, self.config.latent_size)
        return Encoding(latents, F.adaptive_max_pool3d(inside, self.config.encoder_output_shape))

    def fold(self, encoding: Encoding) -> Encoding:
        return encoding

    def decode(self, coords, encoding, patches=None, logits=False):  # [B, N, 3] -> [B, N, 1]
        return self.inside(coords)[..., None].float()


register_model(SPHERE_KIND, OSSNetConfig, AnalyticSphere)


def _sphere_case(root: Path) -> Path:
    """A BraTS case folder of CASE_SHAPE at 2 mm (four random channels, no label); its folder."""
    folder = root / "Sphere_001"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for modality in ("flair", "t1", "t1ce", "t2"):
        image = nib.Nifti1Image(rng.normal(100, 10, CASE_SHAPE).astype(np.float32), CASE_AFFINE)
        image.header.set_qform(CASE_AFFINE, code=1)
        image.header.set_sform(CASE_AFFINE, code=1)
        nib.save(image, str(folder / f"Sphere_001_{modality}.nii.gz"))
    return folder


def _sphere_checkpoint(path: Path) -> Path:
    save_model(path, AnalyticSphere(demo_config("C", "brats", patches=False)))
    return path


def _corners_mm(affine: np.ndarray, shape) -> np.ndarray:
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape])))
    return corners @ affine[:3, :3].T + affine[:3, 3]


def test_predict_at_half_a_millimetre_puts_the_sphere_surface_within_a_quarter_millimetre(tmp_path):
    """oss-net-predict --output_spacing 0.5 on a 2 mm scan: the label map and probabilities on the 0.5 mm grid of the
    scan's box (nibabel and SimpleITK agree), and the mesh of the fine probabilities within 0.25 mm of the sphere."""
    sitk = pytest.importorskip("SimpleITK")
    folder = _sphere_case(tmp_path / "in")
    out = tmp_path / "out"
    assert predict_main(["-i", str(folder), "-o", str(out), "-m", str(_sphere_checkpoint(tmp_path / "sphere.pt")),
                         "--cpu", "--output_spacing", "0.5", "--save_probabilities", "--mesh"]) == 0
    labels = nib.load(str(out / "Sphere_001.nii.gz"))
    assert labels.shape == (120, 120, 80) and np.allclose(labels.header.get_zooms(), 0.5)
    assert np.allclose(_corners_mm(labels.affine, labels.shape), _corners_mm(CASE_AFFINE, CASE_SHAPE))
    assert nib.aff2axcodes(labels.affine) == nib.aff2axcodes(CASE_AFFINE) and int(labels.header["qform_code"]) == 1
    itk = sitk.ReadImage(str(out / "Sphere_001.nii.gz"))
    assert itk.GetSize() == (120, 120, 80) and np.allclose(itk.GetSpacing(), 0.5)
    assert np.allclose(itk.GetOrigin(), np.diag([-1, -1, 1]) @ labels.affine[:3, 3])  # LPS
    probabilities = np.asarray(nib.load(str(out / "probabilities" / "Sphere_001.nii.gz")).dataobj)
    assert probabilities.shape == (120, 120, 80) and np.array_equal(probabilities > 0.5, np.asarray(labels.dataobj) > 0)
    record = json.loads((out / "predictions.json").read_text())["cases"][0]
    assert record["grids"]["label_map"] == {"spacing_mm": [0.5, 0.5, 0.5], "shape": [120, 120, 80]}
    volume_ml = (np.asarray(labels.dataobj) > 0).sum() * 0.125 / 1000
    assert volume_ml == pytest.approx(4 / 3 * np.pi * SPHERE_RADIUS_MM**3 / 1000, rel=0.02)
    mesh = trimesh.load(str(out / "Sphere_001_prediction.obj"), process=False)
    ras = np.asarray(mesh.vertices) * np.array([-1.0, -1.0, 1.0])  # written in LPS
    assert np.abs(np.linalg.norm(ras - SPHERE_CENTRE_MM, axis=1) - SPHERE_RADIUS_MM).max() < 0.25


def test_the_segmenter_returns_images_on_the_output_grid_and_writes_any_format_there(tmp_path):
    """oss_net.Segmenter(output_spacing=0.5): a nibabel image in, nibabel images out on the 0.5 mm grid of its box
    (meshes of the fine field within 0.25 mm of the sphere); a SimpleITK image in, SimpleITK images out on the same
    grid; oss-net-predict --output_format nrrd writes that grid in NRRD."""
    sitk = pytest.importorskip("SimpleITK")
    from oss_net import Segmenter

    folder = _sphere_case(tmp_path / "in")
    checkpoint = _sphere_checkpoint(tmp_path / "sphere.pt")
    segmenter = Segmenter(checkpoint, device="cpu", output_spacing=0.5)
    image = nib.load(str(folder / "Sphere_001_flair.nii.gz"))
    channels = nib.Nifti1Image(np.stack([np.asarray(image.dataobj)] * 4, axis=-1), CASE_AFFINE, image.header)
    result = segmenter.segment(channels, meshes=True)
    fine = grid_at_spacing(CASE_AFFINE, CASE_SHAPE, 0.5)
    assert result.labels.shape == fine.shape == (120, 120, 80) and np.allclose(result.labels.affine, fine.affine)
    assert np.allclose(result.labels.header.get_zooms(), 0.5) and result.probabilities["foreground"].shape == fine.shape
    ras = np.asarray(result.meshes["foreground"].vertices) * np.array([-1.0, -1.0, 1.0])  # LPS by default
    assert np.abs(np.linalg.norm(ras - SPHERE_CENTRE_MM, axis=1) - SPHERE_RADIUS_MM).max() < 0.25
    itk = sitk.ReadImage(str(folder / "Sphere_001_flair.nii.gz"))
    vector = sitk.Compose([itk] * 4)
    itk_labels = segmenter.segment(vector).labels
    assert itk_labels.GetSize() == fine.shape and np.allclose(itk_labels.GetSpacing(), 0.5)
    assert np.array_equal(np.transpose(sitk.GetArrayFromImage(itk_labels)), np.asarray(result.labels.dataobj))
    out = tmp_path / "out"
    assert predict_main(["-i", str(folder), "-o", str(out), "-m", str(checkpoint), "--cpu", "--output_spacing", "0.5",
                         "--output_format", "nrrd"]) == 0
    written = sitk.ReadImage(str(out / "Sphere_001.nrrd"))
    assert written.GetSize() == fine.shape and np.allclose(written.GetSpacing(), 0.5)
    assert np.allclose(written.GetOrigin(), np.diag([-1, -1, 1]) @ fine.affine[:3, 3])


def test_a_spaced_inference_run_writes_every_file_on_the_output_grid_and_says_so(tmp_path, synthetic_brats_root, brats_checkpoint):
    """oss-net-infer --output_spacing 2 on 4 mm synthetic cases: mask and probabilities at 2 mm, metrics there against
    the label resampled by nearest neighbour, the record naming each output's grid; no model-grid occupancy."""
    from oss_net.inference import InferenceSettings, run_inference

    settings = InferenceSettings(load_model=str(brats_checkpoint), dataset_path=str(synthetic_brats_root),
                                 output_dir=str(tmp_path / "out"), cpu=True, output_spacing=(2.0,),
                                 save_probabilities=True, mesh_format=("obj",))
    run_inference(settings)
    case = sorted(p for p in (tmp_path / "out").iterdir() if p.is_dir())[0]
    mask = nib.load(str(case / f"{case.name}_mask.nii.gz"))
    label = nib.load(str(next(synthetic_brats_root.rglob(f"{case.name}_seg.nii.gz"))))
    grid = grid_at_spacing(label.affine, label.shape, 2.0)
    assert mask.shape == grid.shape and np.allclose(_corners_mm(mask.affine, mask.shape), _corners_mm(label.affine, label.shape))
    assert mask.shape[:2] == (120, 120) and np.allclose(mask.header.get_zooms(), grid.spacing, atol=1e-5)
    assert nib.load(str(case / f"{case.name}_probability.nii.gz")).shape == mask.shape
    assert not list(case.glob("*_occupancy*")) and (case / f"{case.name}_prediction.obj").is_file()
    record = json.loads((case / "metrics.json").read_text())
    assert record["grids"]["label_map"] == {"spacing_mm": pytest.approx(list(grid.spacing), abs=1e-5), "shape": list(grid.shape)}
    assert record["grids"]["label_meshes"]["shape"] == [64, 64, 40] and record["dice"] > 0.9
    assert record["foreground_voxels"] == int((np.asarray(mask.dataobj) > 0).sum())


def test_bad_output_spacings_and_a_u_net_are_refused(tmp_path):
    from oss_net.inference import InferenceError, InferenceSettings, make_predictor
    from oss_net.inference.options import PredictOptions
    from oss_net.models import get_unet_config

    for bad in ((0.0,), (1.0, 2.0), (-1.0,), (float("nan"),)):
        with pytest.raises(InferenceError, match="output_spacing must be one number .isotropic. or three, each > 0 mm"):
            PredictOptions(output_spacing=bad)
        with pytest.raises(InferenceError, match="output_spacing must be one number"):
            InferenceSettings(load_model="m.pt", dataset_path=".", output_spacing=bad)
    assert PredictOptions(output_spacing=0.5).output_spacing == (0.5,)
    unet = build_model(get_unet_config("unet3d", "brats", volume_shape=(16, 16, 8), channels=(4, 8), strides=(2,)))
    with pytest.raises(InferenceError, match="U-Net baseline\\) predicts on its model grid only"):
        make_predictor(unet, PredictOptions(output_spacing=(1.0,)))


def test_a_four_times_finer_brats_size_query_allocates_no_dense_grid_beyond_its_output(tmp_path, synthetic_brats_root):
    """Structural: every tensor the prediction allocates is logged (a dispatch mode sees every op's output); at 1 mm
    on a 4 mm case (the fine grid 240×240×155, BraTS size) exactly one allocation holds as many float32 values as
    the grid, the output itself, and none is larger; the decoder never sees more than a chunk of points."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from oss_net.data import discover, load_case
    from oss_net.inference import Predictor
    from oss_net.inference.options import PredictOptions

    class Allocations(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[tuple[str, int]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {t.untyped_storage().data_ptr() for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                    self.sizes.append((str(func), t.untyped_storage().nbytes()))
            return out

    model = AnalyticSphere(demo_config("C", "brats", patches=False))
    case = load_case(discover("brats", synthetic_brats_root, "val")[0], model.config, with_border=False)
    predictor = Predictor(model, PredictOptions(output_spacing=(1.0,), chunk_size=2**12))
    log = Allocations()
    with log:
        prediction = predictor.predict_case(case)
    voxels = prediction.occupancy.numel()
    assert prediction.occupancy.shape == (240, 240, 155) and prediction.grid.spacing[0] == 1.0
    grid_sized = [(op, size) for op, size in log.sizes if size >= 4 * voxels]
    assert len(grid_sized) == 1 and grid_sized[0][1] == 4 * voxels, grid_sized  # the lattice's values: the output
    assert prediction.occupancy.untyped_storage().nbytes() == 4 * voxels
    assert prediction.points_evaluated < 0.05 * voxels
