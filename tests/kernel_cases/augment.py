"""Cases of ``fastdl/kernels/*/augment.py`` (see ``tests/kernel_cases/__init__.py``): flips and
shifts are copies and the noise comes from counter-based hashes through the same correctly
rounded float64 operations (``reference/augment.py``), so every backend must agree bit for bit.

A case is (m, H, W, C, flip, shift, noise, key): ``key`` indexes :data:`KEYS` (seed, epoch,
batch). The hostile ones: a single row, 1x1 and 1-pixel-wide/high images, several channels,
shifts as large as and larger than the image (every pixel can be shifted out), noise off, tiny
(rounds to float32 subnormals and zero) and large, flips on their own, an empty batch, and the
largest keys (the uint64 hash arithmetic wraps). In-place use (``out`` is ``X``) is allowed
only without flips and shifts, so the alias runs there only (``alias_if``).
"""

import numpy as np

from . import EXACT, KernelCase

#: (seed, epoch, batch): zero, ordinary, and the largest integers the kernels accept (2^63 - 1)
KEYS = ((0, 0, 0), (7, 3, 2**40 + 5), (2**63 - 1, 2**62, 2**63 - 1))


def _draw(d, m, H, W, C, flip, shift, noise, key):
    n = H * W * C
    X = d.hostile((m, n))
    flat = X.reshape(-1)
    # a NaN, an infinity, a negative zero and a huge value are copied, shifted out or noised
    # like any value
    for j, v in enumerate((np.nan, -np.inf, -0.0, 1e20)):
        if j < flat.size:
            flat[(j * 7 + 3) % flat.size] = v
    seed, epoch, batch = KEYS[key]
    return dict(out=d.out((m, n)), X=X, height=H, width=W, channels=C, seed=seed, epoch=epoch,
                batch=batch, flip=flip, shift=shift, noise=noise)


def _in_place_allowed(args):
    return not args["flip"] and not args["shift"]


#: tiny: the simulator runs one Python thread per element (blocks of 4 threads there)
SIM = [(1, 1, 1, 1, True, 3, 0.3, 2),           # one row, one pixel, shifted past the image
       (3, 4, 3, 2, True, 1, 0.3, 1),           # every mode, two channels
       (2, 5, 5, 1, True, 2, 0.0, 2),           # flips and shifts, no noise
       (1, 2, 6, 1, False, 1, 0.0, 0),          # shift only, thin image
       (3, 3, 4, 2, False, 0, 0.5, 1),          # noise only (runs in place too)
       (2, 1, 5, 3, True, 0, 0.0, 0),           # flip only, one pixel high
       (2, 3, 3, 1, False, 0, 0.0, 2),          # nothing: a copy (in place: unchanged)
       (0, 3, 3, 1, True, 1, 0.2, 1)]           # an empty batch
CPU = [(1, 1, 1, 1, False, 0, 0.3, 0), (1, 1, 1, 3, True, 1, 0.3, 1),
       (1, 7, 1, 1, True, 9, 1e-3, 2), (1, 1, 9, 2, False, 4, 0.0, 1),
       (5, 4, 5, 3, True, 2, 0.3, 0), (5, 4, 5, 3, True, 2, 0.3, 2),
       (6, 7, 7, 1, True, 6, 0.0, 1), (4, 6, 4, 2, False, 3, 50.0, 2),
       (7, 3, 3, 1, True, 1000, 0.1, 1),        # images shifted out whole: noise on zeros
       (8, 28, 28, 1, True, 2, 0.05, 1),        # MNIST-sized rows, still serial
       (3, 5, 5, 4, False, 0, 1e-39, 0),        # noise rounding to float32 subnormals / zero
       (4, 2, 3, 2, False, 0, 2.5, 2), (0, 4, 4, 1, False, 0, 0.1, 0)]
#: above PARALLEL_TEST_SIZE (2048) elements: the prange over rows
PARALLEL = [(9, 16, 16, 1, True, 3, 0.2, 1), (5, 8, 8, 7, False, 0, 0.4, 2),
            (3, 24, 30, 3, True, 31, 0.0, 0)]

CASES = {
    "augment_images": KernelCase(
        draw=_draw, sim=SIM, cpu=CPU, parallel=PARALLEL, outputs=("out",), rtol=EXACT,
        aliases=(("out", "X"),), alias_if=_in_place_allowed, cpu_parallel=True),
}
