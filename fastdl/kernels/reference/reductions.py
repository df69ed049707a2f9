"""Reductions the training loop needs besides the losses (reference).

sum_squares: out[0] = sum_i x_i^2, accumulated in float64 (the L2 cost term
lambda/(2m) * sum ||W||_F^2 over the weight prefix of the flat buffer).
"""

import numpy as np


def sum_squares(out, x):
    x64 = x.astype(np.float64)
    out[0] = np.dot(x64, x64)
