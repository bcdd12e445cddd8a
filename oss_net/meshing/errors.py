"""The meshing package's error type."""
from __future__ import annotations

from oss_net.io import OSSNetError


class MeshingError(OSSNetError):
    """A mesh cannot be built or written: wrong grid shape, bad affine or level, unreachable face budget."""
