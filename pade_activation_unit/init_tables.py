"""Initial coefficients: least-squares Padé fits of common activations (numerator a_0..a_5, denominator b_1..b_4)."""
from __future__ import annotations

from .reference import PAUError

# Fit of leaky ReLU (slope 0.01) on about [-3, 3] for degrees (5, 4), version A (docs/reference.md §10.1).
LEAKY_RELU_5_4 = (
    (3.35583603e-02, 5.05000375e-01, 1.65343934e00, 2.01001052e00, 9.31901999e-01, 1.52424124e-01),
    (3.30847488e-06, 3.98021568e00, 5.12471206e-07, 3.01830109e-01),
)

INITS = ("leaky_relu", "identity")


def initial_coefficients(init: str, numerator_degree: int, denominator_degree: int) -> tuple[list[float], list[float]]:
    """Coefficients (numerator [m+1], denominator [n]) for a named init.

    "leaky_relu" is the (5, 4) fit of docs/reference.md §10.1; other degrees pad it with zeros or truncate
    it, which only approximates leaky ReLU (truncation can change the shape a lot), so fit your own
    coefficients when another degree pair matters.
    "identity" gives F(x) = x, which needs numerator degree >= 1 (a constant numerator cannot be x).
    """
    if init not in INITS:
        raise PAUError(f"PAU init must be one of {INITS}, got {init!r}")
    if init == "identity":
        if numerator_degree < 1:
            raise PAUError(f"PAU init 'identity' (F(x) = x) needs numerator_degree >= 1, got {numerator_degree}")
        numerator = [0.0] * (numerator_degree + 1)
        numerator[1] = 1.0
        return numerator, [0.0] * denominator_degree
    base_num, base_den = LEAKY_RELU_5_4
    numerator = list(base_num[: numerator_degree + 1]) + [0.0] * max(0, numerator_degree + 1 - len(base_num))
    denominator = list(base_den[:denominator_degree]) + [0.0] * max(0, denominator_degree - len(base_den))
    return numerator, denominator
