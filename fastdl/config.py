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

#: Thread-count-independent results on the cpu backend (docs/reproducibility.md): its GEMMs run
#: as ``GEMM_BLOCKS`` blocks fixed by the shape, one single-threaded BLAS call each, spread over
#: OpenBLAS's threads (``kernels/cpu/_openblas.py``), instead of OpenBLAS's threaded GEMM, whose
#: rounding depends on the number of BLAS threads; every other cpu kernel is thread-count
#: independent anyway. None (default, ``FASTDL_DETERMINISTIC`` unset or "auto"): on wherever
#: NumPy's BLAS is an OpenBLAS that offers it (>= 0.3.29: NumPy >= 2.3 wheels from PyPI), off
#: elsewhere; True: required (an error where unavailable); False: off (OpenBLAS's own threaded
#: GEMM). Measured cost on a 2-vCPU AMD EPYC (Zen 3): -1.7% to +0.8% of a training step of the
#: 784-256-128-10 net at batch 64/256/1024, the two modes alternating step by step
#: (benchmarks/RESULTS_longjobs.md, 2026-12-03).
DETERMINISTIC: bool | None = {"1": True, "true": True, "0": False, "false": False}.get(
    os.environ.get("FASTDL_DETERMINISTIC", "auto").lower())

#: Blocks per deterministic GEMM (at most; fewer for small GEMMs): the machine's logical CPUs,
#: so that every core gets a block. It fixes the rounding, so it is part of what makes two runs
#: bit-identical: set ``FASTDL_GEMM_BLOCKS`` to compare runs across machines of different sizes.
GEMM_BLOCKS: int = max(1, int(os.environ.get("FASTDL_GEMM_BLOCKS", os.cpu_count() or 1)))

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

#: Sparse input (``fastdl/data/sparse.py``): the largest dense array fastdl makes from sparse
#: data. The cpu and numpy backends never densify X (the first Dense layer has sparse kernels,
#: ``kernels/*/sparse.py``); the cuda backend densifies X on the device in blocks of rows of at
#: most this many bytes; sparse targets ``y`` (a label indicator matrix) are densified only up
#: to it. Beyond it: a clear error, never an allocation that can exhaust memory (a 100,000 x
#: 50,000 float32 matrix densified is 20 GB).
SPARSE_DENSIFY_MAX_BYTES: int = int(os.environ.get("FASTDL_SPARSE_DENSIFY_MAX_BYTES", 1 << 30))


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _private_temp_cache() -> str | None:
    """``<tmp>/fastdl-<uid>/numba`` when this user owns ``<tmp>/fastdl-<uid>`` and nobody else
    can write to it: Numba's cache files are pickles, so a directory another user could fill
    would let them run code in this process. None where that cannot be ensured."""
    if not hasattr(os, "getuid"):
        return None
    root = os.path.join(tempfile.gettempdir(), f"fastdl-{os.getuid()}")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        st = os.lstat(root)
    except OSError:
        return None
    import stat
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return os.path.join(root, "numba")


def _seed(src: str, dst: str) -> None:
    """Copy the cache files of a read-only cache directory ``src`` that ``dst`` lacks (a warm
    cache baked into a read-only container image, ``fastdl warmup``), so they load from
    ``dst``. Numba's index files are keyed by the source files' paths and stamps, so entries
    for other installs are simply never used."""
    import shutil
    for base, _dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        for f in files:
            if not f.endswith((".nbi", ".nbc")):
                continue
            target = os.path.join(dst, rel, f)
            if not os.path.exists(target):
                try:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(os.path.join(base, f), target)
                except OSError:
                    return


def _resolve_cache_dir() -> str | None:
    """The Numba JIT cache directory, or None when no candidate is writable.

    Candidates in order: ``NUMBA_CACHE_DIR``, ``FASTDL_CACHE_DIR``, ``~/.cache/fastdl/numba``,
    then a private ``<tmp>/fastdl-<uid>/numba`` (a read-only home in a container). The first
    writable one is used, and Numba is pointed at it (``NUMBA_CACHE_DIR``): Numba itself,
    given an unwritable directory, writes next to the sources or fails at import. An earlier
    candidate that exists but is read-only (a cache warmed at an image's build step) seeds the
    chosen one. None (no caching: kernels compile in memory in every process) when no
    candidate is writable; ``FASTDL_NO_CACHE=1`` forces that.
    """
    def candidates():
        for c in (os.environ.get("NUMBA_CACHE_DIR"), os.environ.get("FASTDL_CACHE_DIR"),
                  os.path.join(os.path.expanduser("~"), ".cache", "fastdl", "numba")):
            if c:
                yield c
        private = _private_temp_cache()     # created only when the others failed
        if private:
            yield private

    read_only = []
    for c in candidates():
        if _writable_dir(c):
            for warm in read_only:
                _seed(warm, c)
            return c
        if os.path.isdir(c):
            read_only.append(c)
    return None


#: Where compiled kernels are cached (None: caching off, see ``_resolve_cache_dir``).
CACHE_DIR: str | None = None if os.environ.get("FASTDL_NO_CACHE") else _resolve_cache_dir()
if CACHE_DIR is not None:
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
    import sys as _sys
    if "numba" in _sys.modules:                    # imported before fastdl: tell it directly
        _sys.modules["numba"].config.CACHE_DIR = CACHE_DIR

#: Whether @njit kernels are compiled with cache=True.
JIT_CACHE: bool = CACHE_DIR is not None
