"""Every tunable of fastdl in one place.

Values are read from the environment once at import (``FASTDL_*`` variables) and can be changed
at run time through the public setters (``fd.set_backend``, ``fd.set_num_threads``) or by
assigning the module attributes before a kernel is first compiled.

Why some of these exist (measured on the 2-core dev machine, see docs/design.md, "Measured facts"):

* ``FASTMATH`` is the *safe* subset of LLVM fast-math flags. Numba's plain fast-math switch adds
  ``nnan``/``ninf``, which lets LLVM delete NaN/inf checks and the ``-inf`` guard of
  log-sum-exp, so it is never used.
* ``OMP_WAIT_POLICY=PASSIVE`` is set (unless the user set it) before Numba's OpenMP layer can
  start: with the default active spin-wait, alternating OpenBLAS GEMMs and parallel Numba
  kernels made one training step 40x slower on 2 cores.
* ``PARALLEL_MIN_SIZE``: element-wise kernels below this many elements run serially; threads
  only pay for themselves on large buffers (optimizer steps over millions of parameters).
"""

from __future__ import annotations

import os
import tempfile

# Must happen before numba (and its libgomp) is imported anywhere in the process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Backend used when a model or optimizer does not name one: "cpu" (Numba), "numpy", "cuda".
DEFAULT_BACKEND: str = os.environ.get("FASTDL_BACKEND", "cpu")

#: Default floating dtype of models.
DEFAULT_DTYPE: str = os.environ.get("FASTDL_DTYPE", "float32")

#: Safe fast-math flags for Numba (no nnan / ninf; see module docstring).
FASTMATH: frozenset = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Element count above which element-wise CPU kernels use their parallel (prange) variant.
PARALLEL_MIN_SIZE: int = int(os.environ.get("FASTDL_PARALLEL_MIN_SIZE", 1 << 20))

#: Threads per block for 1-D CUDA launches (tests patch this down to span many blocks).
CUDA_THREADS_PER_BLOCK: int = int(os.environ.get("FASTDL_CUDA_TPB", 256))

#: Tile width of the fallback shared-memory CUDA GEMM.
CUDA_GEMM_TILE: int = int(os.environ.get("FASTDL_CUDA_GEMM_TILE", 16))

#: How ``fit`` moves host (NumPy) inputs to the cuda backend (issue 17). ``"upload"``: an
#: in-memory X is copied to the device once per fit, and batches of a streamed .npy are copied
#: synchronously. ``"overlap"``: batches of both are gathered on the host into pinned buffers
#: and copied on a second CUDA stream one batch ahead, ordered by events
#: (``kernels/cuda/_staging.py``); an in-memory X then stays on the host and trains through
#: the step path. "upload" stays the default until ``benchmarks/gpu_check.py`` (section
#: ``overlap``) has verified "overlap" on a GPU: so far it is verified only in simulation.
CUDA_HOST_INPUT: str = os.environ.get("FASTDL_CUDA_HOST_INPUT", "upload")

#: Small-net fast path: a dense-only model whose largest layer has at most this many weights
#: trains a whole epoch inside one jitted call (per-call overhead dominates there).
FUSED_EPOCH_MAX_WEIGHTS: int = int(os.environ.get("FASTDL_FUSED_EPOCH_MAX_WEIGHTS", 4096))

#: Out-of-core training (X given as a .npy path or np.memmap, see ``data/batches.py``): rows
#: are read in contiguous blocks of about this many bytes, in a shuffled block order. Random
#: row reads from a memory map read 15-64x more bytes than they use (docs/design.md); blocks do not.
STREAM_BLOCK_BYTES: int = int(os.environ.get("FASTDL_STREAM_BLOCK_BYTES", 16 << 20))

#: Blocks per in-memory shuffle buffer; rows are permuted inside a buffer. Two buffers exist
#: (one consumed, one prefetched by a background thread): memory is about
#: 2 * STREAM_BUFFER_BLOCKS * STREAM_BLOCK_BYTES whatever the size of the file.
STREAM_BUFFER_BLOCKS: int = int(os.environ.get("FASTDL_STREAM_BUFFER_BLOCKS", 8))

#: bfloat16 GEMM provider of the cpu backend (``kernels/cpu/blas.py``): "auto" (oneDNN where
#: its bfloat16 GEMM runs on this CPU, else "emulated"), "onednn", or "emulated" (operands
#: widened exactly to float32, then the float32 BLAS GEMM: same arithmetic, no speed-up).
BF16_GEMM: str = os.environ.get("FASTDL_BF16_GEMM", "auto")

#: float32/float64 GEMM provider of the cpu backend: "blas" (NumPy's OpenBLAS, default) or
#: "onednn" (``dnnl_sgemm`` for float32 where the ``bf16`` extra is installed; float64 stays
#: with BLAS). For measurements: oneDNN shares the OpenMP runtime of Numba's parallel kernels.
FLOAT_GEMM: str = os.environ.get("FASTDL_FLOAT_GEMM", "blas")

#: Mixed precision (``compute_dtype="bfloat16"``): an in-memory training set whose bfloat16 copy
#: takes at most this many bytes is converted once per ``fit`` and batches gather bfloat16 rows
#: (half the bytes of float32 rows); larger ones are converted batch by batch as gathered.
BF16_INPUT_CACHE_BYTES: int = int(os.environ.get("FASTDL_BF16_INPUT_CACHE_BYTES", 1 << 30))


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _resolve_cache_dir() -> str | None:
    """The Numba JIT cache directory, or None when no candidate is writable.

    ``cache=True`` makes Numba fail at import when it cannot write its cache, so caching is
    enabled only when a writable directory is found (NUMBA_CACHE_DIR, then ~/.cache/fastdl).
    """
    candidates = [os.environ.get("NUMBA_CACHE_DIR"), os.environ.get("FASTDL_CACHE_DIR"),
                  os.path.join(os.path.expanduser("~"), ".cache", "fastdl", "numba")]
    for c in candidates:
        if c and _writable_dir(c):
            return c
    return None


#: Where compiled kernels are cached (None: caching off).
CACHE_DIR: str | None = None if os.environ.get("FASTDL_NO_CACHE") else _resolve_cache_dir()
if CACHE_DIR is not None:
    os.environ.setdefault("NUMBA_CACHE_DIR", CACHE_DIR)

#: Whether @njit kernels are compiled with cache=True.
JIT_CACHE: bool = CACHE_DIR is not None
