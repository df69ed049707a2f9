"""The small interface every optimizer implements, for models and for plain NumPy arrays.

``opt.step(params, grads, l2=0.0, n_l2=0)`` updates the flat array ``params`` in place from
``grads`` (same size, dtype and contiguity) with one fused kernel call, keeping its state
(velocities, moments) and step counter inside the optimizer. ``l2``/``n_l2`` let a model fold
the course's L2 gradient term ``(lambda/m) W`` into the same pass: the effective gradient is
``g + l2 * p`` on the first ``n_l2`` entries (the weights; the model lays them out first).

A model's fused-epoch path calls :meth:`prepare`, asks :meth:`fused_spec` for the optimizer's
kernel code, float64 hyperparameters and state rows, runs many steps inside one jitted call,
then calls :meth:`advance` with the number of steps taken. The ``hyper`` and ``state`` arrays
it gets are *live*: assigning ``opt.lr`` (or any hyperparameter) rewrites ``hyper`` in place,
and :meth:`load_state_dict` copies into ``state`` in place, so a plan built once stays valid.

State is plain arrays (:meth:`state_dict`), never pickled objects.

Every optimizer also clips gradients, as Keras optimizers do (``global_clipnorm=``,
``clipvalue=``; PyTorch: ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` before
``opt.step()``). Clipping is fused into the update: :meth:`step` runs one ``sum_squares``
reduction into a (1,) float64 buffer (global norm only), then the update kernel itself reads
that buffer (on the device: no host sync), forms ``coef = min(1, max_norm / (norm + 1e-6))``
once, and clips each gradient value inline, ``clamp(g * coef, -clipvalue, clipvalue)``, in the
same loop that updates the parameters (see the legend of ``kernels/reference/optim.py``).
There is no clipped-gradient buffer and no extra pass; ``grads`` itself is never modified.
Measured (cpu, ``Adam.step`` on float32, 2-core dev box, the separate-pass version and this
one interleaved in one process, medians): 10M parameters 10.26 -> 7.61 ms with
``global_clipnorm`` and 8.85 -> 6.01 ms with ``clipvalue`` (unclipped 6.01 / 6.05 ms); 235k
parameters 153 -> 127 us and 128 -> 101 us (unclipped 96 / 98 us). ``clipvalue`` is now free;
``global_clipnorm`` costs only its ``sum_squares`` read. With clipping off the kernels run their
plain loop, unchanged (same time within noise). Figures: benchmarks/RESULTS_monitor.md.

The clipped gradient is the *data-loss* gradient: the loss's L2 term (``l2``) and coupled
``weight_decay`` are added after clipping, inside the update kernel, as PyTorch adds
``weight_decay`` inside ``step()`` after ``clip_grad_norm_``. A clipping optimizer has no
``fused_spec`` (None): the whole-epoch kernels do not clip, so ``fit`` takes the step path.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..backend import get_backend, is_device_array as _is_device_array


# --- validation ----------------------------------------------------------------------------
def _real(name, value, expected):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")
    return float(value)


def check_positive(name, value):
    """A finite number > 0 (learning rates, eps)."""
    v = _real(name, value, "a finite number > 0")
    if v <= 0:
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number > 0")
    return v


def check_nonnegative(name, value):
    """A finite number >= 0 (weight decay, L2)."""
    v = _real(name, value, "a finite number >= 0")
    if v < 0:
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number >= 0")
    return v


def check_beta(name, value):
    """A decay rate in [0, 1): beta = 1 would never forget (and Adam's correction divides by 0)."""
    v = _real(name, value, "a number in [0, 1)")
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name}={value!r} is invalid; expected a number in [0, 1)")
    return v


def check_clip(name, value):
    """None (no clipping) or a finite number > 0 (``global_clipnorm``, ``clipvalue``)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid; expected None (no clipping) or a "
                         "finite number > 0")
    return float(value)


def check_bool(name, value):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is invalid; expected True or False")
    return bool(value)


#: backend name -> the empty "no shadow" array passed to update kernels (see Optimizer.step)
_EMPTY_SHADOWS = {}

#: Clipping options every optimizer has (saved by state_dict, not constructor-specific).
_CLIP_KEYS = ("global_clipnorm", "clipvalue")


class Hyper:
    """A hyperparameter attribute, validated on every assignment.

    Assigning one (``opt.lr = 0.01``) also refreshes the optimizer's packed float64 ``hyper``
    array in place, so a fused-epoch plan holding it sees the new value.
    """

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name, self.attr = name, "_" + name

    def __get__(self, obj, objtype=None):
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj, value):
        setattr(obj, self.attr, self.check(self.name, value))
        obj._refresh_hyper()


def _is_c_contiguous(a) -> bool:
    if isinstance(a, np.ndarray):
        return a.flags.c_contiguous
    strides = getattr(a, "__cuda_array_interface__", {}).get("strides", a.strides)
    return strides is None or a.shape[0] <= 1 or tuple(strides) == (a.dtype.itemsize,)


# --- the base class ------------------------------------------------------------------------
class Optimizer:
    """Base class: buffer validation, state ownership, step counter, state dicts.

    Subclasses set ``kind`` (a name in ``fastdl.kernels.OPTIMIZERS``), ``state_names`` (one
    name per state row of the parameters' size), ``hyperparameters`` (the :class:`Hyper`
    attributes saved in :meth:`state_dict`) and implement ``_update`` and ``_hyper_values``.
    """

    kind = None
    state_names: tuple = ()
    hyperparameters: tuple = ("lr",)

    lr = Hyper(check_positive)
    #: Keras' names: clip the gradient's global L2 norm to this (PyTorch ``clip_grad_norm_``)
    #: and each of its elements to [-clipvalue, clipvalue] (``clip_grad_value_``); None = off.
    global_clipnorm = Hyper(check_clip)
    clipvalue = Hyper(check_clip)
    #: the clipping options (saved by state_dict beside ``hyperparameters``; a resumed run keeps
    #: the ones of the optimizer it is given, as it keeps its lr)
    clip_options = _CLIP_KEYS

    def __init__(self, lr, backend=None, global_clipnorm=None, clipvalue=None):
        self._hyper = None           # packed float64 hyperparameters (see fused_spec)
        self.lr = lr
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self._clip_sq = None         # (1,) float64 squared global norm of the last step
        self.backend = backend
        self.iterations = 0          # steps taken (Keras' name); Adam's t of the last step
        self._state = None           # (n_state_rows, n) backend array, allocated on first use
        self._rows = ()              # 1-D views of the state rows, passed to the kernels
        self._n = None
        self._dtype = None
        self._bk = None
        self._pending = None         # host state loaded before the backend was known

    @property
    def n_state_rows(self) -> int:
        return len(self.state_names)

    # --- hyperparameters ----------------------------------------------------------------
    def _hyper_values(self):
        """The float64 ``hyper`` packing of this optimizer's kernel (see reference/optim.py)."""
        raise NotImplementedError  # pragma: no cover

    def _refresh_hyper(self):
        if getattr(self, "_hyper", None) is None:
            if any(not hasattr(self, "_" + h) for h in self.hyperparameters):
                return               # still in __init__
            self._hyper = np.array(self._hyper_values(), dtype=np.float64)
        else:
            self._hyper[:] = self._hyper_values()

    # --- buffers ------------------------------------------------------------------------
    def _resolve_backend(self, params):
        if self.backend is not None:
            return get_backend(self.backend)
        if _is_device_array(params):
            return get_backend("cuda")
        from .. import config
        name = config.DEFAULT_BACKEND if config.DEFAULT_BACKEND != "cuda" else "cpu"
        return get_backend(name)

    def _allocate(self, n, dtype, backend):
        """Own state for ``n`` entries of ``dtype`` on ``backend`` (a loaded state if any)."""
        self._n, self._dtype, self._bk = int(n), np.dtype(dtype), backend
        if self._pending is not None:
            self._state = backend.asarray(self._pending)
            self._pending = None
        else:
            self._state = backend.zeros((self.n_state_rows, self._n), self._dtype)
        self._rows = tuple(self._state[i] for i in range(self.n_state_rows))

    def _check_size(self, n, dtype, what):
        if n != self._n or np.dtype(dtype) != self._dtype:
            raise ValueError(f"{what} has size {n} and dtype {np.dtype(dtype)}, but this "
                             f"optimizer holds state for {self._n} parameters of {self._dtype}; "
                             "expected the same buffer (use a new optimizer for another one)")

    def _check(self, params, grads):
        for name, a in (("params", params), ("grads", grads)):
            if not (isinstance(a, np.ndarray) or _is_device_array(a)):
                raise TypeError(f"{name} must be a NumPy (or CUDA device) array, got "
                                f"{type(a).__name__}")
            if a.ndim != 1:
                raise ValueError(f"{name} must be a flat 1-D buffer, got shape {a.shape}; "
                                 "expected (n,) (use a flat parameter buffer or .ravel())")
            if a.dtype not in (np.float32, np.float64):
                raise ValueError(f"{name}.dtype={a.dtype} is not supported; expected float32 "
                                 "or float64")
            if not _is_c_contiguous(a):
                raise ValueError(f"{name} is not C-contiguous (strides {a.strides}); expected a "
                                 "contiguous buffer (np.ascontiguousarray makes a copy, which "
                                 "an in-place update would not write back)")
        if params.shape != grads.shape:
            raise ValueError(f"grads has shape {grads.shape} but params has {params.shape}; "
                             "expected the same size")
        if params.dtype != grads.dtype:
            raise ValueError(f"grads.dtype={grads.dtype} differs from params.dtype="
                             f"{params.dtype}; expected the same dtype")
        if isinstance(params, np.ndarray):
            if not params.flags.writeable:
                raise ValueError("params is read-only; expected a writeable array (it is "
                                 "updated in place)")
            if np.may_share_memory(params, grads):
                raise ValueError("grads shares memory with params; expected separate buffers")
        if self._state is None:
            if self._n is not None:          # a loaded state: its size must match
                self._check_size(params.shape[0], params.dtype, "params")
            self._allocate(params.shape[0], params.dtype, self._resolve_backend(params))
        else:
            self._check_size(params.shape[0], params.dtype, "params")

    def step(self, params, grads, l2=0.0, n_l2=0, shadow=None):
        """One update of ``params`` in place from ``grads``; returns nothing.

        ``l2``/``n_l2``: the loss's L2 gradient term ``l2 * p`` (``l2 = lambda / m``) added on the
        first ``n_l2`` entries (a model's weights); 0 for plain arrays.
        ``shadow``: a uint16 array of ``k <= len(params)`` entries that the same kernel sets to
        the bfloat16 bits of the updated ``params[:k]`` (a mixed-precision model's weight
        copy, ``fastdl/precision.py``; float32 params only); None: no copy.
        """
        self._check(params, grads)
        if l2 != 0.0 or n_l2 != 0:
            l2 = check_nonnegative("l2", l2)
            if isinstance(n_l2, bool) or not isinstance(n_l2, numbers.Integral) \
                    or not 0 <= n_l2 <= self._n:
                raise ValueError(f"n_l2={n_l2!r} is invalid; expected an integer in "
                                 f"[0, {self._n}] (the number of weight entries)")
        shadow = self._no_shadow() if shadow is None else self._check_shadow(shadow, params)
        self.iterations += 1
        self._update(params, shadow, grads, self._clip_args(grads), l2, n_l2)

    #: ``step`` accepts ``shadow=`` and writes it in its update kernel (``fit`` relies on it;
    #: an optimizer of another library without it gets its shadow refreshed by the loop).
    writes_shadow = True

    def _no_shadow(self):
        """An empty uint16 array on this optimizer's backend (one per backend, shared)."""
        empty = _EMPTY_SHADOWS.get(self._bk.name)
        if empty is None:
            empty = _EMPTY_SHADOWS[self._bk.name] = self._bk.zeros((0,), np.uint16)
        return empty

    def _check_shadow(self, shadow, params):
        if not (isinstance(shadow, np.ndarray) or _is_device_array(shadow)) \
                or shadow.dtype != np.uint16 or shadow.ndim != 1 \
                or not _is_c_contiguous(shadow) or shadow.shape[0] > params.shape[0]:
            raise ValueError(f"shadow={shadow!r} is invalid; expected a contiguous 1-D uint16 "
                             f"array of at most {params.shape[0]} entries (bfloat16 bits of "
                             "params[:k]) or None")
        if shadow.shape[0] and params.dtype != np.float32:
            raise ValueError(f"shadow needs float32 params (bfloat16 copies of float32 master "
                             f"weights); params.dtype is {params.dtype}")
        if _is_device_array(shadow) != _is_device_array(params):
            raise ValueError("shadow and params live on different devices; expected both on "
                             "the host or both on the GPU")
        return shadow

    # --- gradient clipping ----------------------------------------------------------------
    @property
    def clipping(self) -> bool:
        """True when ``global_clipnorm`` or ``clipvalue`` is set."""
        return self._global_clipnorm is not None or self._clipvalue is not None

    def _clip_args(self, grads):
        """``(sum_sq, max_norm, clip_value)`` for the update kernel, which clips inline: the
        squared global norm (one ``sum_squares`` reduction into a (1,) float64 buffer on the
        backend, only when ``global_clipnorm`` is set; no host synchronization) and the bounds,
        inf = off. With clipping off the kernel never reads ``sum_sq``."""
        if self._clip_sq is None:
            self._clip_sq = self._bk.zeros((1,), np.float64)
        if self._global_clipnorm is not None:
            self._bk.k.sum_squares(self._clip_sq, grads)
        inf = math.inf
        return (self._clip_sq,
                inf if self._global_clipnorm is None else self._global_clipnorm,
                inf if self._clipvalue is None else self._clipvalue)

    @property
    def last_grad_norm(self):
        """Global L2 norm of the gradient of the last step, before clipping (what PyTorch's
        ``clip_grad_norm_`` returns); None unless ``global_clipnorm`` is set and a step ran.
        On a GPU reading it synchronizes."""
        if self._global_clipnorm is None or self._clip_sq is None:
            return None
        return math.sqrt(float(self._bk.to_numpy(self._clip_sq)[0]))

    def _update(self, params, shadow, grads, clip, l2, n_l2):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- fused-epoch support -------------------------------------------------------------
    def prepare(self, n, dtype, backend):
        """Allocate state for a buffer of ``n`` entries without taking a step."""
        if self._state is None:
            if self._n is not None:
                self._check_size(int(n), dtype, "the parameter buffer")
            self._allocate(n, dtype, backend)
        else:
            self._check_size(int(n), dtype, "the parameter buffer")

    def fused_spec(self):
        """``(opt_kind, hyper, state)`` for the fused-epoch kernel (see reference/optim.py).

        ``hyper`` (float64) and ``state`` ((k, n), the parameters' dtype) are live arrays: later
        hyperparameter assignments and :meth:`load_state_dict` update them in place. None when
        gradient clipping is on (the fused kernels do not clip; ``fit`` then steps batch by
        batch).
        """
        from ..kernels import OPTIMIZERS
        if self.clipping:            # the whole-epoch kernels do not clip: use the step path
            return None
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}.fused_spec() needs state; call "
                               "prepare(n, dtype, backend) or step() first")
        return OPTIMIZERS[self.kind], self._hyper, self._state

    def advance(self, n_steps):
        """Record ``n_steps`` steps taken by a fused kernel."""
        self.iterations += int(n_steps)

    # --- state ----------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        """State rows by name (``{"m": ..., "v": ...}``) as NumPy arrays; on the host these are
        live views of the optimizer's buffers. Empty before the first step."""
        if self._state is None:
            return {}
        return {name: self._bk.to_numpy(row) for name, row in zip(self.state_names, self._rows)}

    def state_dict(self) -> dict:
        """Name, step counter, hyperparameters and state rows, all NumPy arrays (no pickle)."""
        d = {"optimizer": np.array(type(self).__name__),
             "iterations": np.array(self.iterations, dtype=np.int64)}
        for h in self.hyperparameters:
            d[h] = np.array(getattr(self, h))
        for h in _CLIP_KEYS:             # float64, NaN = None (no object arrays in a .npz)
            v = getattr(self, h)
            d[h] = np.array(np.nan if v is None else v, dtype=np.float64)
        if self._state is not None:
            d["state"] = np.array(self._bk.to_numpy(self._state), copy=True)
        elif self._pending is not None:
            d["state"] = self._pending.copy()
        return d

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned (validated; copies into live buffers)."""
        name = str(np.asarray(d.get("optimizer", type(self).__name__)))
        if name != type(self).__name__:
            raise ValueError(f"state_dict is from a {name} optimizer; expected "
                             f"{type(self).__name__}")
        missing = [k for k in ("iterations", *self.hyperparameters) if k not in d]
        if missing:
            raise ValueError(f"state_dict lacks {missing}; expected the keys of "
                             f"{type(self).__name__}.state_dict()")
        it = np.asarray(d["iterations"])
        if it.ndim != 0 or not np.issubdtype(it.dtype, np.integer) or int(it) < 0:
            raise ValueError(f"iterations={it.tolist()!r} is invalid; expected an integer >= 0")
        st = None
        if "state" in d:
            st = np.asarray(d["state"])
            if st.ndim != 2 or st.shape[0] != self.n_state_rows \
                    or st.dtype not in (np.float32, np.float64):
                raise ValueError(f"state has shape {st.shape} and dtype {st.dtype}; expected "
                                 f"({self.n_state_rows}, n) float32 or float64 "
                                 f"(rows {self.state_names})")
            if self._state is not None:
                self._check_size(st.shape[1], st.dtype, "the saved state")
        for h in self.hyperparameters:   # validated by their setters
            setattr(self, h, np.asarray(d[h]).item())
        for h in _CLIP_KEYS:             # absent from states saved before clipping existed
            if h in d:
                v = np.asarray(d[h])
                v = v.item() if v.ndim == 0 else v
                setattr(self, h, None if isinstance(v, float) and math.isnan(v) else v)
        self.iterations = int(it)
        if st is None:                   # saved before any step: a fresh state
            if self._state is not None:
                st = np.zeros((self.n_state_rows, self._n), self._dtype)
            else:
                self._n = self._dtype = self._pending = None
                return
        if self._state is not None:
            self._state[...] = self._bk.asarray(np.ascontiguousarray(st))
        else:
            self._n, self._dtype = st.shape[1], st.dtype
            self._pending = np.array(st, copy=True, order="C")

    def __repr__(self):
        args = ", ".join(f"{h}={getattr(self, h)!r}" for h in self.hyperparameters
                         + tuple(h for h in _CLIP_KEYS if getattr(self, h) is not None))
        return f"{type(self).__name__}({args})"
