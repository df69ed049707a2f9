"""The one place that resolves a backend name ("numpy" | "cpu" | "cuda") to its kernels.

A :class:`Backend` bundles the kernel namespace with the few array operations layers and
optimizers need to own buffers (allocate, move to and from the host). Layers and optimizers call
``backend.k.<kernel>(...)``; nothing else in fastdl branches on the backend name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from . import config

BACKENDS = ("numpy", "cpu", "cuda")
_MODULES = {"numpy": "fastdl.kernels.reference", "cpu": "fastdl.kernels.cpu",
            "cuda": "fastdl.kernels.cuda"}
_cache: dict[str, "Backend"] = {}


@dataclass(frozen=True)
class Backend:
    """A kernel namespace plus buffer management for one device."""

    name: str
    k: ModuleType = field(repr=False)
    on_device: bool = False  # arrays live in GPU memory
    fused_epoch: bool = False  # offers a whole-epoch kernel that beats the step path (tiny nets)

    def empty(self, shape, dtype):
        return self.k._empty(shape, dtype) if self.on_device else np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self.k._zeros(shape, dtype) if self.on_device else np.zeros(shape, dtype)

    def asarray(self, host_array):
        """A backend array holding a copy of (or, on the host or already on the device, the
        same) ``host_array``."""
        if not self.on_device or is_device_array(host_array):
            return host_array
        return self.k._to_device(host_array)

    def copy(self, arr):
        """A copy that stays on this backend (device to device on a GPU)."""
        if not self.on_device:
            return np.array(arr, copy=True)
        out = self.k._empty(arr.shape, arr.dtype)
        out.copy_to_device(arr)
        return out

    def copy_into(self, dst, src):
        """dst[...] = src for two arrays of this backend (same shape and dtype)."""
        if self.on_device:
            dst.copy_to_device(src)
        else:
            dst[...] = src

    def to_numpy(self, arr) -> np.ndarray:
        return self.k._to_host(arr) if self.on_device else np.asarray(arr)

    def synchronize(self):
        if self.on_device:
            self.k._synchronize()


def is_device_array(a) -> bool:
    """A CUDA device array: numba's (real or simulated), CuPy's, or any object exposing
    ``__cuda_array_interface__``."""
    return not isinstance(a, np.ndarray) and (hasattr(a, "__cuda_array_interface__")
                                              or hasattr(a, "copy_to_host"))


def check_name(name) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend={name!r} is not a known backend; expected one of {BACKENDS}")
    return name


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name`` (default: ``config.DEFAULT_BACKEND``), imported on first use."""
    name = check_name(config.DEFAULT_BACKEND if name is None else name)
    if name not in _cache:
        if name == "cuda":
            from .kernels.cuda import _require_gpu  # clear error without a GPU or numba-cuda
            _require_gpu()
        module = importlib.import_module(_MODULES[name])
        _cache[name] = Backend(name, module, on_device=(name == "cuda"),
                               fused_epoch=getattr(module, "FUSED_EPOCH_PAYS", False))
    return _cache[name]


def set_backend(name: str) -> None:
    """Set the default backend for models and optimizers created afterwards. The backend is
    loaded first, so ``set_backend("cuda")`` without numba-cuda or a GPU raises here (naming
    what is missing) and the default stays what it was."""
    get_backend(check_name(name))
    config.DEFAULT_BACKEND = name


def set_num_threads(n: int) -> None:
    """Threads used by parallel Numba kernels, by BLAS (NumPy's OpenBLAS/MKL, through
    threadpoolctl, a required dependency) and by oneDNN's GEMMs (its OpenMP runtime): all pools
    are set, since they take turns within a training step and contend when they disagree
    (docs/design.md, "Measured facts")."""
    import numba

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} is not a valid thread count; expected an integer >= 1")
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n={n} exceeds the {numba.config.NUMBA_NUM_THREADS} threads Numba "
                         "was started with (NUMBA_NUM_THREADS)")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise ImportError("fd.set_num_threads(n) sets the BLAS threads through threadpoolctl, "
                          f"which is not installed ({e}); it is a dependency of fastdl: pip "
                          "install threadpoolctl. Nothing was changed.") from e
    numba.set_num_threads(int(n))
    threadpool_limits(int(n), user_api="blas")
    from .kernels.cpu import _onednn
    _onednn.set_num_threads(int(n))
