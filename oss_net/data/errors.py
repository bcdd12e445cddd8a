"""The one exception type of the data package."""
from __future__ import annotations

from oss_net.io import OSSNetError


class DatasetError(OSSNetError):
    """A dataset file or folder that cannot be used; the message names the file and the problem."""
