"""``fd.warmup(model)``: compile, once, what a model will need for training and inference.

Numba compiles a kernel for each signature (dtype, activation code, optimizer) on its first
call and, where a cache directory is writable (``config.CACHE_DIR``), writes it there so later
processes load it in milliseconds (docs/reproducibility.md, "Compile once"). ``warmup`` makes
that first call happen now, on a throwaway copy of the model (same layers, dtype, backend; the
model itself is not touched): one tiny ``fit`` with the optimizer (the whole-epoch kernel for
small dense nets, and always the per-batch step path with gather, forward, loss, backward, L2
and the update), then ``evaluate`` and ``predict_proba``. Run it in a container image's build
step (``fastdl warmup --layers ...``) so jobs start on a warm cache, or with
``background=True`` to overlap compilation with data loading.

What it cannot compile ahead: the ``prange`` variants that only buffers of at least
``config.PARALLEL_MIN_SIZE`` elements take (batch x width >= 1M; a 784-256-128-10 net never
does), weighted losses (``sample_weight``) and the cuda backend's kernels (compiled per GPU
when first launched). Those compile on first use, as before.
"""

from __future__ import annotations

import time

import numpy as np

#: Rows of the throwaway training data; batches of ``_BATCH`` rows (two full batches).
_ROWS, _BATCH = 4, 2


class WarmupReport:
    """What ``warmup`` did: ``seconds``, ``compiled`` and ``loaded`` (kernel signatures
    compiled here / loaded from the cache; 0 and 0 off the cpu backend), ``cache_dir``."""

    def __init__(self, seconds, compiled, loaded, cache_dir):
        self.seconds, self.compiled, self.loaded, self.cache_dir = (seconds, compiled, loaded,
                                                                    cache_dir)

    def __repr__(self):
        where = self.cache_dir or "no cache directory: compiled in memory only"
        return (f"WarmupReport({self.compiled} kernel signatures compiled, {self.loaded} "
                f"loaded from the cache in {self.seconds:.2f} s; cache: {where})")


def _fresh_optimizer(optimizer):
    """A new optimizer of the same kind and settings (hyperparameters, clipping), no state."""
    from .optim import SGD
    if optimizer is None:
        return SGD()
    try:
        new = type(optimizer)()
    except TypeError:                       # an optimizer class with required arguments
        import copy
        return copy.deepcopy(optimizer)
    state = {k: v for k, v in optimizer.state_dict().items() if k != "state"}
    new.load_state_dict(state)
    new.iterations = 0
    return new


def _targets(model, m, rng):
    """Labels the model's loss accepts: class indices, 0/1 columns or real values."""
    if model.loss.name == "categorical_crossentropy":
        return rng.integers(0, model.output_dim, m)
    if model.loss.name == "binary_crossentropy":
        return (rng.random((m, model.output_dim)) < 0.5).astype(model.dtype)
    return rng.standard_normal((m, model.output_dim)).astype(model.dtype)


def _counts():
    from .kernels.cpu._jit import compile_counts
    c = compile_counts()
    return sum(v[1] for v in c.values()), sum(v[0] for v in c.values())


def _run(model, optimizer):
    from . import config
    from .nn.sequential import Sequential
    from .train.callbacks import Callback
    t0 = time.perf_counter()
    compiled0, loaded0 = _counts()
    twin = Sequential.from_config(model.get_config(), backend=model.backend_name)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((_ROWS, model.input_dim)).astype(model.dtype)
    y = _targets(model, _ROWS, rng)

    class _PerBatch(Callback):      # a per-batch hook routes fit through the step path
        def on_batch_end(self, batch, logs=None):
            pass
    opt = _fresh_optimizer(optimizer if optimizer is not None else model.optimizer)
    # whole-epoch kernel (small dense nets) or step path, as a plain fit would take ...
    twin.fit(X, y, optimizer=opt, epochs=1, batch_size=_BATCH, l2=1e-4, verbose=0)
    # ... and the step path in any case (callbacks with batch hooks, validation, Ctrl-C redo)
    twin.fit(X, y, optimizer=opt, epochs=1, batch_size=_BATCH, l2=1e-4, verbose=0,
             callbacks=[_PerBatch()], validation_data=(X, y))
    twin.predict_proba(X)
    warm_gemm = getattr(twin._bk.k, "_warm_gemm", None)     # cpu: GEMMs of larger batches
    if warm_gemm is not None:
        warm_gemm(model.dtype)
    compiled, loaded = _counts()
    return WarmupReport(time.perf_counter() - t0, compiled - compiled0, loaded - loaded0,
                        config.CACHE_DIR if config.JIT_CACHE else None)


def warmup(model, background=False, optimizer=None):
    """Compile (or load from the JIT cache) every kernel ``model`` needs to train with
    ``optimizer`` (default: the model's last optimizer, else fit's default SGD) and to predict.

    Returns a :class:`WarmupReport`; with ``background=True`` a ``concurrent.futures.Future``
    of it at once, the work running on a daemon thread (Numba compiles under the GIL, so this
    overlaps with I/O such as loading data, not with other Python work; a kernel the main
    thread needs meanwhile waits for it rather than being compiled twice).
    """
    from .nn.sequential import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model={model!r} is not a fastdl model; expected an fd.Sequential")
    if not isinstance(background, bool):
        raise TypeError(f"background={background!r} is invalid; expected True or False")
    if optimizer is not None:
        from .train.loop import check_optimizer
        check_optimizer(optimizer)
    if not background:
        return _run(model, optimizer)
    from concurrent.futures import Future
    import threading
    future = Future()

    def work():
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(_run(model, optimizer))
            except BaseException as e:          # delivered through future.result()
                future.set_exception(e)
    threading.Thread(target=work, name="fastdl-warmup", daemon=True).start()
    return future
