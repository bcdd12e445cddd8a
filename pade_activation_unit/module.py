"""The PAU nn.Module: one learnable set of coefficients shared across all channels and positions."""
from __future__ import annotations

import torch
from torch import nn

from .functional import pau
from .init_tables import initial_coefficients
from .reference import MAX_DEGREE, VERSIONS, PAUError


class PAU(nn.Module):
    """Padé Activation Unit F(x) = P(x)/Q(x) (Molina et al., ICLR 2020).

    Args:
        numerator_degree: degree m of P (m+1 coefficients), 0..8.
        denominator_degree: degree n of Q (n coefficients, the constant 1 is fixed), 1..8.
        version: "A" safe per-term absolute values (default), "B" absolute value of the sum, "N" unsafe.
        init: "leaky_relu" (the paper's init) or "identity".
        backend: force a backend for this instance ("cuda-kernel", "cpu-kernel", "reference"); None picks per device.

    Shape: any; element-wise.
    """

    def __init__(
        self,
        numerator_degree: int = 5,
        denominator_degree: int = 4,
        version: str = "A",
        init: str = "leaky_relu",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= numerator_degree <= MAX_DEGREE:
            raise PAUError(f"numerator_degree must be in 0..{MAX_DEGREE}, got {numerator_degree}")
        if not 1 <= denominator_degree <= MAX_DEGREE:
            raise PAUError(f"denominator_degree must be in 1..{MAX_DEGREE}, got {denominator_degree}")
        if version not in VERSIONS:
            raise PAUError(f"version must be one of {VERSIONS}, got {version!r}")
        self.numerator_degree = numerator_degree
        self.denominator_degree = denominator_degree
        self.version = version
        self.backend = backend
        numerator, denominator = initial_coefficients(init, numerator_degree, denominator_degree)
        self.numerator = nn.Parameter(torch.tensor(numerator, dtype=torch.float32))
        self.denominator = nn.Parameter(torch.tensor(denominator, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pau(x, self.numerator, self.denominator, self.version, backend=self.backend)

    def extra_repr(self) -> str:
        return f"numerator_degree={self.numerator_degree}, denominator_degree={self.denominator_degree}, version={self.version!r}"
