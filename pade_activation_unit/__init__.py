"""Padé Activation Unit: a learnable rational activation with C++/CUDA kernels and a pure-PyTorch reference."""
from .functional import pau
from .module import PAU
from .reference import pau_reference

__all__ = ["PAU", "pau", "pau_reference"]
