"""Cases of ``fastdl/kernels/*/sparse.py`` (see ``tests/kernel_cases/__init__.py``), and the CSR
batches that ``batching.gather_csr_rows``'s case draws too (:func:`csr`).

A drawn CSR matrix is hostile by construction: empty rows, a row storing every column, random
rows in between, explicitly stored zeros (``d.hostile`` values); either canonical (sorted
column indices without repeats, what scipy's ``sum_duplicates`` leaves and tf-idf gives) or
"messy" (unsorted, a (row, column) entry repeated: the repeats add, as in scipy); int32 or int64
column indices; and optionally a row range of a larger matrix (``indptr[0] != 0``, entries
before and after the range that the kernels must not read).
"""

import numpy as np

from fastdl.kernels import ACTIVATIONS, BF16
from fastdl.kernels import reference as R

from . import KernelCase

ACTS = sorted(ACTIVATIONS.values())
ALPHA = 0.07

#: the CSR layouts a case names: (canonical, index dtype, indptr[0] offset)
LAYOUTS = {"canon32": (True, np.int32, 0), "messy32": (False, np.int32, 0),
           "canon64": (True, np.int64, 0), "messy64": (False, np.int64, 0),
           "range32": (False, np.int32, 3), "range64": (True, np.int64, 5)}


def csr(d, m, n, layout="messy32", density=0.3):
    """(data, indices, indptr) of an m x n CSR matrix of ``d.dtype`` (module docstring): row r
    is empty when r % 4 == 1, stores every column when r % 4 == 2, else about ``density * n``
    random columns."""
    canonical, index_dtype, offset = LAYOUTS[layout]
    rows = []
    for r in range(m):
        k = 0 if r % 4 == 1 else n if r % 4 == 2 else int(d.rng.binomial(n, density))
        cols = d.rng.choice(n, size=k, replace=False)
        if canonical:
            cols = np.sort(cols)
        elif k:                                 # a repeated entry, anywhere in the row
            cols = d.rng.permutation(np.concatenate([cols, cols[:1]]))
        rows.append(cols)
    lengths = np.array([c.shape[0] for c in rows], np.int64)
    indptr = offset + np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tail = 2 if offset else 0                   # entries past the range: never read
    junk = d.rng.integers(0, max(n, 1), size=offset + tail)
    indices = np.concatenate([junk[:offset]] + rows + [junk[offset:]]).astype(index_dtype)
    data = d.hostile((indices.shape[0],), 1.0)
    return data, indices, indptr


def _layer(d, n_in, n_out, bias):
    W = d.hostile((n_out, n_in), 1.0 / np.sqrt(max(n_in, 1)))
    b = d.hostile((n_out,), 1.0) if bias else d.skip()
    return W, b


def _forward(d, m, n_in, n_out, act, bias, layout="messy32", low=False):
    """``low`` (float32 only): the mixed-precision first layer, which computes in float32 from
    the float32 master weights and writes the bfloat16 copy A16 the next Dense reads."""
    data, indices, indptr = csr(d, m, n_in, layout)
    W, b = _layer(d, n_in, n_out, bias)
    low = low and d.low
    return dict(A=d.out((m, n_out)), A16=d.out((m, n_out), BF16) if low else d.no16(),
                data=data, indices=indices, indptr=indptr, W=W, b=b, activation=act,
                alpha=ALPHA)


def _backward(d, m, n_in, n_out, act, bias, layout="messy32"):
    data, indices, indptr = csr(d, m, n_in, layout)
    W, b = _layer(d, n_in, n_out, bias)
    A = np.empty((m, n_out), d.dtype)
    R.csr_dense_forward(A, d.no16(), data, indices, indptr, W, b, act, ALPHA)
    dA = d.hostile((m, n_out), 1.0 / max(m, 1))
    return dict(dW=d.out((n_out, n_in)), db=d.out((n_out,)) if bias else d.skip(), dA=dA, A=A,
                data=data, indices=indices, indptr=indptr, activation=act, alpha=ALPHA)


#: (m, n_in, n_out): batch 1, an empty batch, sizes multiples of nothing, n_out across the cpu
#: forward's blocks of 16 units (33 = 2 blocks and 1), m above the db block of 256 rows
SHAPES_CPU = [(1, 1, 1), (1, 9, 17), (0, 5, 3), (6, 13, 16), (9, 40, 33), (300, 12, 5)]
#: the cpu parallel passes need n_out * n_in >= PARALLEL_TEST_SIZE, n_out > 16 (forward unit
#: blocks) and n_out >= 128 (backward dZ/db column blocks of 64): 300 = 18 unit blocks and 12
#: units, 4 column blocks and 44 columns; 260 rows cross the db block of 256 (130 = 8 unit
#: blocks and 2 units, 2 column blocks and 2 columns)
SHAPES_PARALLEL = [(37, 40, 300), (260, 16, 130)]
#: the layouts the serial cases rotate through (every one on the (9, 40, 33) shape); the
#: parallel cases use int32 indices only, scipy's default (the int64 variants are the same
#: code: their serial cases suffice, and each index dtype costs a parallel compilation)
CPU_LAYOUTS = sorted(LAYOUTS)

#: the simulator (threads run in Python, blocks patched to 4; the bias + activation kernels are
#: dense.py's, whose cases run every code): every code once, batch 1, an empty batch, each
#: layout once
SIM_FORWARD = ([(7, 9, 5, 1, True)]
               + [(1, 3, 2, 4, True, "canon32"), (0, 4, 3, 1, True), (5, 4, 13, 2, False,
                                                                           "range64"),
                  (6, 5, 6, 3, True, "messy64", True), (5, 6, 9, 1, True, "range32", True),
                  (4, 7, 3, 0, False, "canon64")])
SIM_BACKWARD = ([(7, 9, 5, 1, True)]
                + [(1, 3, 2, 4, True, "canon32"), (0, 4, 3, 1, True), (5, 4, 13, 2, False,
                                                                            "range64"),
                   (6, 5, 6, 3, True, "messy64"), (5, 6, 9, 1, True, "range32"),
                   (4, 7, 3, 0, False, "canon64")])

CASES = {
    "csr_dense_forward": KernelCase(
        draw=_forward,
        sim=SIM_FORWARD,
        cpu=[s + (a, bias, lay) for s in SHAPES_CPU for a in ACTS for bias in (True, False)
             for lay in (CPU_LAYOUTS[(a + 2 * bias) % len(CPU_LAYOUTS)],)]
        + [(9, 40, 33, 1, True, lay) for lay in CPU_LAYOUTS]
        + [s + (a, True, "messy32", True) for s in SHAPES_CPU for a in ACTS],
        parallel=[s + (a, True, "messy32") for s in SHAPES_PARALLEL[:1] for a in ACTS]
        + [SHAPES_PARALLEL[1] + (3, False, "range32"),
           SHAPES_PARALLEL[0] + (1, True, "canon32", True)],
        outputs=("A", "A16"), cpu_parallel=True),
    "csr_dense_backward": KernelCase(
        draw=_backward,
        sim=SIM_BACKWARD,
        cpu=[s + (a, bias, lay) for s in SHAPES_CPU for a in ACTS for bias in (True, False)
             for lay in (CPU_LAYOUTS[(a + 2 * bias + 1) % len(CPU_LAYOUTS)],)]
        + [(9, 40, 33, 1, True, lay) for lay in CPU_LAYOUTS],
        parallel=[s + (a, True, "messy32") for s in SHAPES_PARALLEL[:1] for a in ACTS]
        + [SHAPES_PARALLEL[1] + (2, True, "range32"),
           SHAPES_PARALLEL[1] + (0, False, "canon32")],
        outputs=("dW", "db", "dA"), cpu_parallel=True),
}
