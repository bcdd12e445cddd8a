"""The Python API, for notebooks and pipelines (MONAI's included): a checkpoint loaded once, images segmented.

    import oss_net
    segmenter = oss_net.Segmenter("best_model.pt")              # device=, amp=, mode=, refinement=, threshold=
    result = segmenter.segment("scan.nrrd")                      # or a nibabel / SimpleITK image, or array + affine
    result.labels                                                # the label map, the input's kind of object
    result.probabilities["foreground"]                           # per class or region, on the input's grid
    segmenter.segment(image, meshes=True).meshes["foreground"]   # trimesh, scanner mm, LPS
    for result in segmenter.segment_many(["imagesTs"]): ...      # every case of files and folders, a progress bar

The same pipeline as `oss-net-predict` and `oss-net-infer` (`oss_net.inference.segmenter`, where the options
and the kinds of input are described).
"""
from oss_net.inference.segmenter import Segmentation, Segmenter

__all__ = ["Segmentation", "Segmenter"]
