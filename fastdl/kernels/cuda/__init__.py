"""CUDA backend: numba.cuda kernels and their launchers (GPU).

Same file names, public names and argument order as ``fastdl.kernels.reference`` (the spec).
Public names are *launchers*: host functions that take device arrays (numba device arrays, or
anything with ``__cuda_array_interface__`` that numba accepts), pick the launch geometry from
``fastdl.config`` and launch the private ``_<name>_kernel`` kernels on the default stream. They
never synchronize. Dense-layer GEMMs go to cuBLAS through CuPy when it is installed (see
``_gemm.py``), else to a shared-memory tiled numba GEMM.

This package imports nothing from numba.cuda at import time, so ``import fastdl`` and
``import fastdl.kernels.cuda`` work without numba-cuda or a GPU; the kernel files are imported
on first attribute access. ``_require_gpu()`` raises a clear error when the backend cannot run.
The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported) counts as a GPU.
"""

from __future__ import annotations

import importlib
import os

from .. import KERNELS

#: backend.py: ``train_epoch`` pays here. For tiny nets it is one kernel launch per epoch (one
#: thread block runs every batch); for larger dense-only nets it still queues a whole epoch of
#: launches with no host synchronization and no per-batch Python of the model layer.
FUSED_EPOCH_PAYS = True

#: public name -> file (module) that defines it, from the registry.
_PUBLIC = {name: file for file, names in KERNELS.items() for name in names}
#: device helpers the Backend object and the data sources use -> the file that defines them.
_DEVICE_HELPERS = {"_empty": "_device", "_zeros": "_device", "_to_device": "_device",
                   "_to_host": "_device", "_synchronize": "_device", "_stager": "_staging"}


def _require_gpu() -> None:
    """Raise RuntimeError naming what is missing when the cuda backend cannot run here."""
    try:
        from numba import cuda
    except ImportError as e:  # numba without its CUDA target
        raise RuntimeError(
            "backend='cuda' needs NVIDIA's numba-cuda package, which is not installed "
            f"({e}); install it with: pip install 'fastdl[cuda]' (numba-cuda plus CuPy for "
            "cuBLAS GEMMs)") from e
    from numba import config as nb_config
    if nb_config.ENABLE_CUDASIM:
        return
    if cuda.is_available():
        return
    reason = ""
    try:
        cuda.current_context()
    except Exception as e:  # the driver's own explanation (no driver, no device, ...)
        reason = f": {type(e).__name__}: {str(e).strip()}"
    hint = ""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        hint = (" (NUMBA_ENABLE_CUDASIM=1 is set, but only after numba was imported; set it "
                "before the first numba import to use the simulator)")
    raise RuntimeError("backend='cuda' found no usable CUDA GPU or NVIDIA driver"
                       f"{reason}{hint}. Use backend='cpu', or run on a machine with an "
                       "NVIDIA GPU and driver.")


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f"{__name__}.{_PUBLIC[name]}")
    elif name in _DEVICE_HELPERS:
        module = importlib.import_module(f"{__name__}.{_DEVICE_HELPERS[name]}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_DEVICE_HELPERS))


__all__ = sorted(_PUBLIC)
