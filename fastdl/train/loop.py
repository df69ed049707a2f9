"""The mini-batch training loop behind ``Sequential.fit``.

Two paths compute the same thing:

* the step path: per batch, gather rows into a reused buffer, forward, fused loss, backward,
  one fused optimizer kernel over the flat buffer;
* the fused-epoch path (small dense-only nets on backends that offer it): the whole epoch in
  one kernel call (``kernels/<backend>/epoch.py``), so Python overhead disappears.

Per-batch losses are written into a per-epoch buffer on the backend, so a GPU run needs no
host synchronisation per step; host backends check each cost as it comes.
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np

from .. import config
from .._validation import check_float, check_int, check_rows
from ..data.batches import batch_sizes, epoch_order, make_source  # noqa: F401 (epoch_order)
from ..data.sparse import describe, is_sparse
from ..signals import NO_FLAG, PreemptionFlag, check_signal_names, in_main_thread
from .callbacks import Callback, History
from .checkpoint import check_writable
from .errors import DivergenceError, Preempted  # noqa: F401 (fastdl.train.loop.DivergenceError)
from .progress import make_progress
from .strategy import SingleProcess


def check_optimizer(optimizer):
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer={optimizer.__module__}.{optimizer.__qualname__} is a class; "
                        f"pass an instance such as fd.optim.{optimizer.__name__}() (it holds the "
                        "step counter and moments from one step to the next)")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer={optimizer!r} is not an optimizer; expected an object with "
                        "step(params, grads, l2=..., n_l2=...) such as fd.optim.SGD(lr=0.01)")


def _validation_set(model, validation_data):
    """``validation_data`` checked once: in memory, validated and encoded (``model.evaluate``
    applies the standardizer every epoch); a ``.npy`` path or ``np.memmap`` X (and y) stays on
    disk, its width checked here, and is read in chunks by ``evaluate`` every epoch."""
    from .._validation import as_features, as_targets
    from ..data.batches import count_rows, is_streamable, row_chunks
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        n = len(validation_data) if hasattr(validation_data, "__len__") else "?"
        raise ValueError("validation_data must be a tuple (X_dev, y_dev) or (X_dev, y_dev, "
                         f"sample_weight_dev); got {type(validation_data).__name__} of "
                         f"length {n}")
    Xv, yv = validation_data[0], validation_data[1]
    if is_streamable(Xv):
        m = count_rows("validation_data[0]", Xv)
        for _, first in row_chunks("validation_data[0]", Xv, 1):
            as_features("validation_data[0]", first, model.dtype, model.input_dim)
            break
        val = (Xv, yv)
    else:
        Xc = model._input("validation_data[0]", Xv)   # dense rows, or sparse ones (CSRRows)
        yc = as_targets("validation_data[1]", yv)
        check_rows(Xc, yc, "validation_data[0]", "validation_data[1]")
        m = Xc.shape[0]
        val = (Xc, model.loss.encode(yc, model.output_dim, model.dtype, "validation_data[1]"))
    if len(validation_data) == 3 and validation_data[2] is not None:
        val += (model._sample_weight(validation_data[2], m, "validation_data[2]")[0],)
    return val


def _check_fit_args(model, X, y, optimizer, epochs, batch_size, l2, validation_data, callbacks,
                    verbose, lr_schedule, sample_weight=None, drop_last=False):
    check_int("epochs", epochs, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    check_int("verbose", verbose, minimum=0)
    check_float("l2", l2, minimum=0.0)
    if optimizer is not None:       # None: SGD, or the checkpoint's optimizer on resume
        check_optimizer(optimizer)
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"lr_schedule={lr_schedule!r} must be callable (epoch -> lr)")
    if isinstance(callbacks, Callback):         # Keras/PyTorch Lightning users pass one
        callbacks = [callbacks]
    callbacks = list(callbacks or [])
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}]={cb!r} is not a fastdl Callback")
    source = make_source(model, X, y)
    if sample_weight is not None:
        if source.streaming:
            source.close()
            raise NotImplementedError(
                "sample_weight with out-of-core X (a .npy path or np.memmap) is not supported: "
                "the streamed batches carry no weights; load X into memory (np.load) to train "
                "with sample_weight")
        source.set_weights(model._sample_weight(sample_weight, source.m)[0])
    if drop_last and batch_size > source.m:
        source.close()
        raise ValueError(f"drop_last=True with batch_size={batch_size} and {source.m} training "
                         "rows leaves no complete batch to train on; lower batch_size or pass "
                         "drop_last=False")
    val = None if validation_data is None else _validation_set(model, validation_data)
    return source, val, callbacks


def _fused_layout(model, optimizer, wants_batches, weighted=False):
    """The fused-epoch kernel's arguments, or None when the step path must be used
    (``wants_batches``: a per-step hook is needed: batch callbacks, a distributed reduce)."""
    bk = model._bk
    if not (bk.fused_epoch and model._dense_only) or wants_batches:
        return None
    if weighted:        # train_epoch has no per-example weights: their batches take the step path
        return None
    if model.precision.low:     # the whole-epoch kernels compute in the parameters' dtype only
        return None
    # On the host the fused kernel pays only for tiny nets; a device backend's train_epoch picks
    # its one-block kernel or per-batch launches itself, without the step path's per-batch Python.
    if not bk.on_device and \
            max(op.units * op.input_dim for op in model._ops) > config.FUSED_EPOCH_MAX_WEIGHTS:
        return None
    alphas = {op.runtime_alpha for op in model._ops if op.runtime_activation == 2}
    if len(alphas) > 1:
        return None
    optimizer.prepare(model.params.size, model.dtype, bk)
    spec = optimizer.fused_spec()
    if spec is None:                 # e.g. a clipping optimizer: the fused kernels do not clip
        return None
    p = model.params
    layout = np.array([[p.offset(op._index, "W"),
                        p.offset(op._index, "b") if op.use_bias else -1,
                        op.units, op.input_dim, op.runtime_activation] for op in model._ops],
                      dtype=np.int64)
    return layout, (alphas.pop() if alphas else 0.01), spec


class _Tally:
    """An epoch's training accuracy: examples classified right (before each update, weighted
    with sample_weight) over the examples (weight) seen; on this rank when distributed."""

    def __init__(self, counts=None):
        self.correct, self.total = (0.0, 0.0) if counts is None else map(float, counts)

    def counts(self):
        return np.array([self.correct, self.total])

    def accuracy(self, strategy):
        # distributed: every rank's rows of the global batches
        both = strategy.sum_counts(np.array([self.correct, self.total]))
        return float(both[0] / both[1]) if both[1] > 0 else float("nan")


def _run_fused(model, optimizer, plan, Xd, Yd, order, bs, l2, tally=None):
    layout, alpha, (opt_kind, hyper, state) = plan
    m = order.shape[0]
    nb = (m + bs - 1) // bs
    bk = model._bk
    costs = bk.zeros((nb,), np.float64)          # on the device for cuda: no sync per batch
    correct = bk.zeros((nb if tally is not None else 0,), np.float64)
    units = int(layout[:, 2].sum())
    ws_key = ("fused", bs)
    ws = model._workspaces.get(ws_key)
    if ws is None:
        ws = model._workspaces[ws_key] = bk.empty((bs * (model.input_dim + 2 * units),),
                                                  model.dtype)
    bk.k.train_epoch(costs, correct, model.params.data, model.params.grad, state, ws, Xd, Yd,
                     bk.asarray(order), bs, layout, model.loss.code, l2, model.params.n_decay,
                     alpha, opt_kind, hyper, optimizer.iterations)
    costs = bk.to_numpy(costs)
    if tally is not None:
        tally.correct += float(bk.to_numpy(correct).sum())
        tally.total += float(m)
    optimizer.advance(nb)
    model.steps_trained += nb
    return costs


class _Run:
    """The fit in progress as a checkpoint sees it (``model._run`` during ``fit``): where it
    is inside the epoch and the callbacks whose state changes the run.

    ``batch``: batches done in epoch ``model.epochs_trained``; ``capture()`` gives the run
    state ``fastdl/io.py`` writes (``position``: None at an epoch boundary; ``callbacks``:
    {(class name, occurrence): {"state", "weights"}} of the callbacks
    ``fastdl/model_schema.py`` declares a state for)."""

    def __init__(self, model, callbacks, rows, batch_size, shuffle, drop_last):
        from ..model_schema import CALLBACK_STATES
        self.model = model
        self.rows, self.batch_size = int(rows), int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.batch = 0
        self.earlier = np.empty(0)      # costs of the epoch's batches done before _run_steps
        self.earlier_counts = None      # (correct, seen) of those (classification), or None
        self.partial = None             # (upto) -> costs of the batches _run_steps did
        self.partial_counts = None      # (upto) -> (correct, seen) of those
        seen, self.stateful = {}, []
        for cb in callbacks:
            name = type(cb).__name__
            k = seen[name] = seen.get(name, -1) + 1
            if name in CALLBACK_STATES:
                self.stateful.append(((name, k), cb))

    def costs(self):
        """The cost of every batch done in the epoch so far (float64, host)."""
        done = self.earlier
        if self.partial is not None and self.batch > done.shape[0]:
            done = np.concatenate([done, self.partial(self.batch)])
        return done[:self.batch]

    def counts(self):
        """(examples classified right, examples seen) in the epoch so far, or None (no
        training accuracy: regression)."""
        c = self.earlier_counts
        if self.partial_counts is not None:
            c = self.partial_counts(self.batch) + (0.0 if c is None else c)
        return c

    def capture(self):
        pos = None
        if self.batch:
            pos = {"rows": self.rows, "batch_size": self.batch_size, "batch": self.batch,
                   "shuffle": self.shuffle, "drop_last": self.drop_last,
                   "losses": self.costs(), "accuracy_counts": self.counts()}
        states = {}
        for key, cb in self.stateful:
            st = cb.get_state()
            if st is not None:
                states[key] = {"state": st, "weights": cb.state_weights()}
        return {"position": pos, "callbacks": states}

    def restore_callbacks(self, saved):
        for key, cb in self.stateful:
            if key in saved:
                cb.set_state(saved[key]["state"], saved[key]["weights"])


class _EpochStart:
    """Parameters, optimizer state and learning rate, the step counter and the layers' running
    statistics as they were when the epoch began (or where a resumed run took it up), with the
    run's position and callback states (``run``). Parameters and optimizer state stay on the
    backend: on a GPU a device-to-device copy per epoch instead of a host round trip (which
    cost the 784-4096-4096-10 net more than half its throughput). Restored when an epoch
    diverges or is interrupted (Ctrl-C)."""

    def __init__(self, model, optimizer, run=None):
        bk = self.bk = model._bk
        self.params = bk.copy(model.params.data)
        self.steps = model.steps_trained
        self.layer_states = model._layer_states()       # BatchNorm running statistics
        self.lr = getattr(optimizer, "lr", None)
        self.run = None if run is None else run.capture()
        state = getattr(optimizer, "_state", None)
        if hasattr(optimizer, "_state") and hasattr(optimizer, "iterations"):
            self.opt = (optimizer.iterations, None if state is None else bk.copy(state))
        else:                                       # a third-party optimizer: its own format
            self.opt = optimizer.state_dict()

    def restore(self, model, optimizer):
        model.params.restore(self.params)
        model.steps_trained = self.steps
        model._restore_layer_states(self.layer_states)
        if self.lr is not None:
            optimizer.lr = self.lr
        if isinstance(self.opt, tuple):
            optimizer.iterations, state = self.opt
            if state is not None:
                self.bk.copy_into(optimizer._state, state)
        else:
            optimizer.load_state_dict(self.opt)


class _StepSchedule(Callback):
    """Sets ``optimizer.lr = schedule(steps taken)`` before every update (``unit="step"``)."""

    def __init__(self, schedule, optimizer):
        self.schedule, self.optimizer = schedule, optimizer

    def on_train_begin(self, logs=None):
        self.optimizer.lr = self.schedule(self.optimizer.iterations)

    def on_batch_end(self, batch, logs=None):
        self.optimizer.lr = self.schedule(self.optimizer.iterations)


class _NonFiniteCost(Exception):
    """Internal: the cost of (epoch, batch) is not finite; ``_fit`` turns it into a
    DivergenceError after putting back the parameters of the last finite cost."""

    def __init__(self, epoch, batch, cost):
        super().__init__(epoch, batch, cost)
        self.epoch, self.batch, self.cost = epoch, batch, cost


def _diverged(model, epoch, batch, cost):
    raise _NonFiniteCost(epoch, batch, cost)


def _keep_last_finite(model, optimizer, err, start, first, previous, replay):
    """Put back the parameters that produced the last finite cost, then raise DivergenceError.

    The cost of batch b is computed before b's update, from the parameters of b - 1 updates:
    the ones to keep are those *before* the update that followed the last finite cost. No copy
    is taken per step (it would cost a pass over the parameters every update); instead the
    epoch's start (``start``, taken at batch ``first``: 0, or where a resumed run took the
    epoch up) is restored and the updates up to batch b - 1 replayed (batches, dropout masks
    and augmentation are pure functions of seed, epoch and step, so the replay repeats them).
    At the epoch's first batch the last finite cost was the previous epoch's last batch:
    ``previous`` = (epoch, its start, its first batch, its batch count) is replayed minus its
    last update; where this fit has nothing before (its first epoch, or a resumed run's first
    batch) the parameters are those fit started with."""
    e, b = err.epoch, err.batch
    if b > first:
        start.restore(model, optimizer)
        replay(e, first, b - 1)
        kept = f"the parameters after epoch {e}, batch {b - 1}, which produced its finite cost"
    elif b == first and previous is not None and previous[3] - 1 >= previous[2]:
        pe, pstart, pfirst, pn = previous
        pstart.restore(model, optimizer)
        model.epochs_trained = pe               # the kept parameters are inside epoch pe
        replay(pe, pfirst, pn - 1)
        kept = (f"the parameters after epoch {pe}, batch {pn - 1} (its last), which produced "
                "its finite cost")
    else:
        start.restore(model, optimizer)
        kept = "the parameters this fit started with (already their cost was not finite)"
    raise DivergenceError(f"training diverged: the cost became {err.cost} at epoch {e}, batch "
                          f"{b}; stopped before applying that update. The model keeps {kept}. "
                          "Try a lower learning rate, input standardization or gradient "
                          "checking.") from None


def _batch_costs(bk, losses, sqs, denoms, l2, weighted):
    """The cost of each batch (L2 term included) from the backend's loss and squared-weight
    buffers; ``denoms``: each batch's rows (or weight sum with sample_weight)."""
    losses, sqs = bk.to_numpy(losses), bk.to_numpy(sqs)
    if l2 and weighted:
        n = denoms.shape[0]
        return losses + np.divide(l2, 2.0 * denoms, out=np.zeros(n), where=denoms > 0) * sqs
    return losses + (l2 / (2.0 * denoms)) * sqs if l2 else losses


def _run_steps(model, optimizer, source, bs, shuffle, drop_last, l2, batch_cbs, epoch,
               check_each, progress=None, prepare=None, strategy=None, start=0, run=None,
               flag=NO_FLAG, limit=None, tally=None):
    """One epoch, batch by batch, from ``source`` (``data/batches.py``: in memory or streamed),
    from batch ``start`` (a run resumed inside the epoch). Returns the costs of the batches it
    did and whether it stopped early for a preemption (``flag``: after the step in progress,
    the same step on every process, see ``strategy.reduce``).
    ``prepare(Xb, epoch, batch)``, when given, edits each gathered training batch in place
    (data augmentation: ``_batch_hook``; streamed rows arrive standardized from the source).
    ``limit``: stop before batch ``limit`` (the replay of ``_keep_last_finite``). ``tally``: a
    ``_Tally`` that receives the training accuracy counts of the batches done."""
    bk = model._bk
    strategy = SingleProcess() if strategy is None else strategy
    sizes = batch_sizes(source.m, bs, drop_last)
    nb = sizes.shape[0]
    # with sample_weight the cost's denominator (and the L2 term's m) is each batch's weight
    # sum, set by the source as ws.wsum with the batch's rows (``Sequential.fit``)
    weighted = getattr(source, "W", None) is not None
    denoms = np.zeros(nb) if weighted else sizes
    losses = bk.zeros((nb,), np.float64)
    sqs = bk.zeros((nb,), np.float64)
    corrects = bk.zeros((nb if tally is not None else 0,), np.float64)
    seen = np.zeros(nb)                 # rows (or weight) of this process's batches
    if run is not None:     # a checkpoint inside the epoch reads the costs so far
        run.partial = lambda upto: _batch_costs(bk, losses[start:upto], sqs[start:upto],
                                                denoms[start:upto], l2, weighted)
        if tally is not None:
            run.partial_counts = lambda upto: np.array(
                [bk.to_numpy(corrects[start:upto]).sum(), seen[start:upto].sum()])
    cost = None
    stop_after = None
    own_flag = not strategy.reduces_every_step     # else the flag rides in strategy.reduce
    # mixed precision: the source gathered the rows straight into the bfloat16 ws.X16
    # (ArraySource.gather_bf16), unless a hook edits the float32 rows first
    x16_ready = getattr(source, "fills_x16", False) and prepare is None
    # distributed: ws holds this rank's rows of the global batch b of mb rows (maybe none:
    # ws.m == 0); strategy.reduce makes p.grad and losses[b] the global batch's
    batches = source.batches(model, model.seed, epoch, bs, shuffle, drop_last, start=start)
    try:
        for b, ws, mb in batches:
            if limit is not None and b >= limit:
                break
            for cb in batch_cbs:         # before the forward pass (the parameters are unchanged)
                cb.on_batch_begin(b, {"size": mb})
            if prepare is not None and ws.m:
                prepare(ws.Xb, epoch, b)
            denom = mb
            count = corrects[b:b + 1] if tally is not None else None
            if weighted:
                denom = denoms[b] = ws.wsum
                model._step_costs(ws.Xb, ws.Yb, ws, l2, losses[b:b + 1], sqs[b:b + 1],
                                  ws.wb, ws.wsum, count, x16_ready=x16_ready)
                seen[b] = ws.wsum
            elif ws.m:
                model._step_costs(ws.Xb, ws.Yb, ws, l2, losses[b:b + 1], sqs[b:b + 1],
                                  correct_buf=count, x16_ready=x16_ready)
                seen[b] = ws.m
            stop = strategy.reduce(model, ws, mb, losses[b:b + 1], sqs[b:b + 1], l2,
                                   stop=flag.requested)
            # a batch of zero total weight has no data: no L2 term either (not l2/0)
            l2_m = l2 / denom if denom else 0.0
            if check_each:
                cost = float(losses[b]) + (l2 / (2.0 * denom) * float(sqs[b])
                                           if l2 and denom else 0.0)
                if not np.isfinite(cost):
                    _diverged(model, epoch, b, cost)
            model._apply_update(optimizer, l2_m)
            model.steps_trained += 1
            if run is not None:
                run.batch = b + 1
            for cb in batch_cbs:        # checkpoints last (``_fit``)
                cb.on_batch_end(b, {"loss": cost, "size": mb})
            if progress is not None:
                progress.update(b, mb, cost)
            if (own_flag and flag.requested) or (not own_flag and stop):
                stop_after = b + 1
                break
    finally:
        batches.close()          # stops a streaming source's prefetch thread
        if run is not None:
            run.partial = run.partial_counts = None
    if tally is not None:
        tally.correct += float(bk.to_numpy(corrects).sum())
        tally.total += float(seen.sum())
    end = nb if stop_after is None else stop_after
    if limit is not None:
        end = min(end, limit)
    costs = _batch_costs(bk, losses[start:end], sqs[start:end], denoms[start:end], l2, weighted)
    return costs, stop_after is not None


def _check_sparse_fit(X, augment, distributed):
    """What a sparse X (``data/sparse.py``) cannot be combined with in ``fit``."""
    if distributed:
        raise NotImplementedError(
            f"distributed=True with sparse X ({describe(X)}) is not supported: the ranks' "
            "shards are dense row blocks; train in one process (sparse rows are small), or "
            "densify X")
    if augment is not None:
        raise ValueError(f"augment={augment!r} needs dense rows (images), but X is sparse "
                         f"({describe(X)}); train without augment")


def _check_augment(model, augment):
    from ..data.augment import Augment
    if not isinstance(augment, Augment):
        raise TypeError(f"augment={augment!r} is not an augmentation; expected "
                        "fd.Augment(image_shape=(H, W) or (H, W, C), flip=..., shift=..., "
                        "noise=...)")
    augment.check_features(model.input_dim)


def _batch_hook(model, augment):
    """``prepare(Xb, epoch, batch)`` for ``_run_steps``, or None when batches go in as
    gathered: augmentation from (seed, epoch, batch) by the backend's ``augment_images``
    kernel, where the batch is (on the device for cuda: no host round trip). Streamed rows
    arrive standardized (``data/batches.py``); validation data never pass through here."""
    if augment is None:
        return None
    bk = model._bk
    scratch = {}                    # the unaugmented copy the kernel reads, per batch shape

    def prepare(Xb, epoch, batch):
        src = None
        if augment.moves_pixels:
            src = scratch.get(Xb.shape)
            if src is None:
                src = scratch[Xb.shape] = bk.empty(Xb.shape, Xb.dtype)
        augment.apply(Xb, model.seed, epoch, batch, backend=bk, scratch=src)
    return prepare


def fit(model, X, y, optimizer=None, epochs=1, batch_size=64, l2=0.0, validation_data=None,
        callbacks=None, verbose=1, shuffle=True, lr_schedule=None, drop_last=False,
        resume_from=None, augment=None, sample_weight=None, initial_epoch=0, strategy=None,
        preemption_signals=None, preempt_path=None):
    """``Sequential.fit`` (see its docstring). ``strategy``: how the run is spread over
    processes (``strategy.py``; None: :class:`SingleProcess`, one process)."""
    strategy = SingleProcess() if strategy is None else strategy
    if is_sparse(X):
        _check_sparse_fit(X, augment, strategy.distributed)
    strategy.check_arguments(sample_weight=sample_weight)
    initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
    if initial_epoch and resume_from is not None:
        raise ValueError(f"initial_epoch={initial_epoch} cannot be combined with resume_from: "
                         "a resumed run continues at the epoch it stopped after")
    flag = preemption_flag(preemption_signals)
    if preempt_path is not None and (not isinstance(preempt_path, (str, os.PathLike))
                                     or not os.fspath(preempt_path)):
        raise TypeError(f"preempt_path={preempt_path!r} is invalid; expected a file path "
                        "(str) for the checkpoint a preemption writes, or None")
    return strategy.run(model, lambda: _fit_process(
        model, X, y, optimizer, epochs, batch_size, l2, validation_data, callbacks, verbose,
        shuffle, lr_schedule, drop_last, resume_from, augment, sample_weight, strategy, flag,
        None if preempt_path is None else os.fspath(preempt_path), initial_epoch))


def preemption_flag(preemption_signals):
    """The flag ``fit`` raises on a preemption signal (``fastdl/signals.py``), not installed
    yet. ``None`` (the default): SIGTERM, when fit runs in the main thread and SIGTERM still
    has its default action (a handler the program installed itself, or an ignored SIGTERM,
    is left alone); ``()``: none; a tuple of names: those, or a clear error where that is not
    possible."""
    if preemption_signals is None:
        sig = getattr(signal, "SIGTERM", None)
        if sig is None or not in_main_thread() or signal.getsignal(sig) is not signal.SIG_DFL:
            return NO_FLAG
        return PreemptionFlag((sig,))
    sigs = check_signal_names("preemption_signals", preemption_signals)
    if sigs and not in_main_thread():
        raise ValueError(f"preemption_signals={tuple(s.name for s in sigs)!r} needs fit to run "
                         "in the main thread (Python delivers signals there only); pass "
                         "preemption_signals=() when fit runs in another thread")
    return PreemptionFlag(sigs) if sigs else NO_FLAG


def _fit_process(model, X, y, optimizer, epochs, batch_size, l2, validation_data, callbacks,
                 verbose, shuffle, lr_schedule, drop_last, resume_from, augment, sample_weight,
                 strategy, flag=NO_FLAG, preempt_path=None, initial_epoch=0):
    """This process's part of the run: arguments, resume, data source, then :func:`_fit`."""
    if augment is not None:
        _check_augment(model, augment)
    if preempt_path is not None and strategy.writes_files:
        check_writable("preempt_path", preempt_path)
    resumed = None
    if isinstance(resume_from, History):    # this model's own run, continued in memory (panda)
        optimizer, resumed = _resume_in_memory(model, resume_from, optimizer)
    elif resume_from is not None:    # weights, counters, seed, optimizer state, standardizer,
        from ..io import resume_into  # history: first, so the inputs see the saved standardizer
        optimizer, resumed = resume_into(model, resume_from, optimizer)
        resumed["path"] = os.fspath(resume_from)
    if optimizer is None:                   # Keras: the compiled optimizer; else SGD(lr=0.01)
        optimizer = _default_optimizer(model)
    strategy.fit_standardizer(model, X)     # distributed: rank 0 fits it, every rank gets it
    source, val, callbacks = _check_fit_args(model, X, y, optimizer, epochs, batch_size, l2,
                                             validation_data, callbacks, verbose, lr_schedule,
                                             sample_weight, drop_last)
    try:
        # distributed: agree on the run, broadcast rank 0's model, shard the batches
        source = strategy.setup(model, source, epochs, batch_size, float(l2), shuffle,
                                drop_last)
        model._epoch_start = None
        return _fit(model, source, optimizer, epochs, batch_size, float(l2), val, callbacks,
                    verbose, shuffle, lr_schedule, bool(drop_last), resumed, initial_epoch,
                    augment=augment, strategy=strategy, flag=flag, preempt_path=preempt_path)
    except KeyboardInterrupt:
        _rewind_interrupted_epoch(model)
        raise
    finally:
        source.close()


def _default_optimizer(model):
    """``fit(optimizer=None)`` without a resumed run's own: ``model.optimizer`` (the last fit's,
    or what ``fd.load`` restored: Keras's compiled optimizer, state included) when there is
    one, otherwise ``SGD(lr=0.01)``."""
    if getattr(model, "optimizer", None) is not None:
        return model.optimizer
    from ..optim import SGD
    return SGD(lr=0.01)


def _rewind_interrupted_epoch(model):
    """Ctrl-C (KeyboardInterrupt) in the middle of an epoch: put the parameters, optimizer
    state, step counter and BatchNorm running statistics back to where the epoch began (its
    start, or where a resumed run took it up), with the run's position and callback states
    then, which is what the last epoch-end ModelCheckpoint holds and what ``model.history``
    ends with, so ``fit(..., resume_from=model.history)`` (or a checkpoint) continues from a
    consistent state."""
    pending = getattr(model, "_epoch_start", None)
    model._epoch_start = None
    if pending is not None and pending[0] == model.epochs_trained:
        pending[1].restore(model, model.optimizer)
        model._position = pending[1].run


def _resume_in_memory(model, history, optimizer):
    """``fit(..., resume_from=model.history)``: continue the run of this model object (after a
    Ctrl-C, or to train longer after changing the learning rate), appending to the same History.
    A new optimizer object of the same class takes over the old one's state (its own
    hyperparameters kept, as on resume from a checkpoint); None keeps ``model.optimizer``."""
    if history is not getattr(model, "history", None):
        raise ValueError(f"resume_from={history!r} is not this model's current run; pass "
                         "model.history (the History of this model's last fit) or a checkpoint "
                         "path")
    done = history.epoch[-1] + 1 if history.epoch else 0        # epochs of the run
    if done + model._fit_start_epoch != model.epochs_trained:
        raise ValueError(f"resume_from=model.history ends after epoch {done} but the model has "
                         f"trained {model.epochs_trained - model._fit_start_epoch} epochs of "
                         "that run; it was changed since")
    old = getattr(model, "optimizer", None)
    if optimizer is None:
        optimizer = old
    elif old is not None and optimizer is not old:
        if type(optimizer) is not type(old):
            raise ValueError(f"resume_from=model.history: the run used a {type(old).__name__} "
                             f"optimizer but fit was given {optimizer!r}; pass a "
                             f"{type(old).__name__} (or optimizer=None to keep the run's)")
        mine = {h: getattr(optimizer, h) for h in getattr(optimizer, "hyperparameters", ())}
        optimizer.load_state_dict(old.state_dict())
        for h, v in mine.items():        # the caller's explicit settings win
            setattr(optimizer, h, v)
    return optimizer, {"object": history, "fit_start_epoch": model._fit_start_epoch,
                       "run": getattr(model, "_position", None)}


def _fit(model, source, optimizer, epochs, batch_size, l2, val, callbacks, verbose, shuffle,
         lr_schedule, drop_last, resumed, initial_epoch=0, augment=None, strategy=None,
         flag=NO_FLAG, preempt_path=None):
    strategy = SingleProcess() if strategy is None else strategy
    bk = model._bk
    m = source.m
    bs = min(int(batch_size), m)
    sizes = batch_sizes(m, bs, drop_last)
    n_used = int(sizes.sum())
    history = History()
    # Epochs are numbered within the run, for schedules, callbacks, the History and the
    # progress line: a plain fit counts from this call (Keras), from ``initial_epoch``; a
    # resumed run from its first fit. The shuffle counter ``model.epochs_trained`` runs on
    # across calls (a second fit sees new batches): epoch index = epochs_trained - run_start.
    run_start = model.epochs_trained - initial_epoch
    if resumed is not None and "object" in resumed:     # resume_from=model.history
        history = resumed["object"]
        run_start = resumed["fit_start_epoch"]
    elif resumed is not None:
        history.epoch = list(resumed["epoch"])
        history.history = {k: list(v) for k, v in resumed["history"].items()}
        run_start = resumed["fit_start_epoch"]
    history.stopped_at = None
    last_epoch = run_start + int(epochs)
    if resumed is not None and model.epochs_trained >= last_epoch:
        warnings.warn(f"resume_from: the run has already trained "
                      f"{model.epochs_trained - run_start} epochs, which is >= epochs={epochs}; "
                      "nothing will be trained (epochs counts the whole run: pass a larger "
                      "epochs to continue)", UserWarning, stacklevel=4)
    saved = (resumed or {}).get("run") or {"position": None, "callbacks": {}}
    start_batch, start_costs = _resume_position(saved["position"], resumed, m, bs, shuffle,
                                                drop_last, model.epochs_trained)
    start_counts = (saved["position"] or {}).get("accuracy_counts")
    # what a checkpoint needs to continue this run (see fastdl/io.py)
    model.optimizer, model.history, model._fit_start_epoch = optimizer, history, run_start
    # checkpoints run after the other callbacks, so they hold every state of the same step
    savers = [cb for cb in callbacks if getattr(cb, "saves_checkpoints", False)]
    cbs = [history] + [cb for cb in callbacks if cb not in savers]
    for cb in cbs + savers:
        cb.set_model(model)
    if getattr(lr_schedule, "unit", "epoch") == "step":
        # a per-step schedule needs a hook between updates, so it runs as a batch callback
        # (which also routes training through the step path: the fused kernel has no hook)
        cbs.append(_StepSchedule(lr_schedule, optimizer))
        lr_schedule = None
    cbs += savers
    batch_cbs = [cb for cb in cbs if cb.wants_batches()]
    target = preempt_path if preempt_path is not None else \
        next((cb for cb in savers if cb.saves_anywhere()), None)
    plan = None
    prepare = _batch_hook(model, augment)
    if model._low_input and prepare is None and getattr(source, "gather_bf16", None):
        source.gather_bf16(model)   # mixed precision: bfloat16 input rows, rounded once
        # (other sources fill ws.Xb; the model rounds it per batch in _forward)
    if prepare is None and getattr(source, "on_backend", False) \
            and getattr(source, "fusable", True) and not (drop_last and m % bs):
        plan = _fused_layout(model, optimizer, bool(batch_cbs) or strategy.reduces_every_step,
                             weighted=getattr(source, "W", None) is not None)
    # distributed: only rank 0 prints; ranks > 0 augment with their own draws
    verbose = strategy.verbose(verbose)
    prepare = strategy.prepare_hook(prepare)
    progress = make_progress(verbose)
    # after a non-finite cost: the updates that led to the last finite one, done again with
    # only the per-step learning-rate schedule as a callback (see _keep_last_finite)
    step_schedules = [cb for cb in batch_cbs if isinstance(cb, _StepSchedule)]

    def replay(epoch, first, upto):
        _run_steps(model, optimizer, source, bs, shuffle, drop_last, l2, step_schedules, epoch,
                   False, prepare=prepare, strategy=strategy, start=first, limit=upto)
    previous = None         # (epoch, its _EpochStart, its first batch, its batches): one back
    run = _Run(model, cbs, m, bs, shuffle, drop_last)
    model._run, model._strategy, model._position = run, strategy, None
    model.stop_training = False
    preempted = False
    flag.install()
    try:
        for cb in cbs:
            cb.on_train_begin({})
        run.restore_callbacks(saved["callbacks"])
        if progress is not None:
            progress.on_train_begin(model.epochs_trained - run_start, last_epoch - run_start)
        while model.epochs_trained < last_epoch:
            e = model.epochs_trained            # the shuffle counter (batches, replays)
            epoch = e - run_start               # the epoch of this run (schedules, callbacks)
            run.batch, run.earlier = start_batch, start_costs
            run.earlier_counts = start_counts
            if lr_schedule is not None:
                optimizer.lr = lr_schedule(epoch)
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            if progress is not None:
                progress.on_epoch_begin(epoch, sizes)
            start = _EpochStart(model, optimizer, run)
            model._epoch_start = (e, start)     # what a Ctrl-C rewinds to (see fit)
            t0 = time.perf_counter()
            costs = None
            tally = _Tally(start_counts) if model.loss.is_classification else None
            try:
                if plan is not None and start_batch == 0:
                    order = source.order(model.seed, e, shuffle)
                    costs = _run_fused(model, optimizer, plan, source.X, source.Y, order, bs,
                                       l2, tally)
                    if not np.isfinite(costs).all():   # redo step by step to stop exactly
                        start.restore(model, optimizer)
                        costs = None
                if costs is None:
                    check_each = not bk.on_device or bool(batch_cbs)
                    bar = progress if progress is not None and progress.per_batch else None
                    costs, preempted = _run_steps(
                        model, optimizer, source, bs, shuffle, drop_last, l2, batch_cbs, e,
                        check_each, bar, prepare, strategy, start_batch, run, flag, tally=tally)
                    if not np.isfinite(costs).all():   # device: found at the end of the epoch
                        start.restore(model, optimizer)
                        run.batch = start_batch
                        _run_steps(model, optimizer, source, bs, shuffle, drop_last, l2,
                                   batch_cbs, e, True, prepare=prepare, strategy=strategy,
                                   start=start_batch, run=run)
            except _NonFiniteCost as err:
                model._epoch_start = None
                _keep_last_finite(model, optimizer, err, start, start_batch, previous, replay)
            previous = (e, start, start_batch, sizes.shape[0])
            if preempted:                   # inside the epoch: it is finished by the resume
                run.earlier = np.concatenate([start_costs, costs])
                run.earlier_counts = None if tally is None else tally.counts()
                model._epoch_start = None
                break
            costs = np.concatenate([start_costs, costs]) if start_batch else costs
            start_batch, start_costs, start_counts = 0, np.empty(0), None
            bk.synchronize()
            strategy.end_epoch(model)   # distributed: rank 0's batch-norm running statistics
            elapsed = time.perf_counter() - t0
            logs = {"loss": float(np.dot(costs, sizes) / n_used)}
            if tally is not None:
                logs["accuracy"] = tally.accuracy(strategy)
            logs["lr"] = float(optimizer.lr)
            if val is not None:
                ev = model.evaluate(*val)
                logs.update({f"val_{k}": v for k, v in ev.items()})
            model.epochs_trained += 1
            run.batch, run.earlier, run.earlier_counts = 0, np.empty(0), None
            model._epoch_start = None
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if progress is not None:
                progress.on_epoch_end(epoch, logs, costs, sizes, elapsed)
            if model.stop_training or model.epochs_trained >= last_epoch:
                break           # the run is over (a signal that came meanwhile: fit returns)
            # a signal that came during validation or the callbacks: stop here, all together
            if strategy.agree(flag.requested):
                preempted = True
                break
        if preempted:
            _preempt(model, run, cbs, target, strategy, flag, history, progress)
        for cb in cbs:
            cb.on_train_end({})
        return history
    finally:
        flag.restore()
        model._run = model._strategy = None


def _resume_position(pos, resumed, m, bs, shuffle, drop_last, epoch):
    """(first batch, costs of the batches before it) of the first epoch of a run resumed
    inside that epoch; (0, no costs) otherwise. The checkpoint's run must have had the same
    batches: the same rows, batch size, shuffle and drop_last."""
    if pos is None:
        return 0, np.empty(0)
    here = {"rows": m, "batch_size": bs, "shuffle": bool(shuffle), "drop_last": bool(drop_last)}
    wrong = [f"{k}={pos[k]!r} there and {v!r} here" for k, v in here.items() if pos[k] != v]
    n = batch_sizes(m, bs, drop_last).shape[0]
    if not wrong and pos["batch"] > n:
        wrong = [f"{pos['batch']} batches done there, {n} per epoch here"]
    if wrong:
        where = repr(resumed["path"]) if "path" in resumed else "model.history"
        raise ValueError(f"resume_from={where} stopped inside epoch {epoch + 1}, after batch "
                         f"{pos['batch']}; the rest of that epoch needs the same batches, but "
                         f"{'; '.join(wrong)} (batch_size counts at most the rows). Resume with "
                         "the same X, batch_size, shuffle and drop_last, or from a checkpoint "
                         "written at an epoch end")
    return int(pos["batch"]), np.asarray(pos["losses"], dtype=np.float64)


def _preempt(model, run, cbs, target, strategy, flag, history, progress):
    """After the step (or epoch end) where the processes agreed to stop: write the
    checkpoint (rank 0), record where the run stopped, run ``on_train_end`` and raise
    :class:`Preempted`."""
    state = run.capture()
    path = None
    if isinstance(target, str):                 # preempt_path
        path = target
        if strategy.writes_files:
            from ..io import save
            try:
                save(model, target, run=state)
            except OSError as e:
                warnings.warn(f"the preemption checkpoint {target!r} could not be written "
                              f"({type(e).__name__}: {e})", RuntimeWarning, stacklevel=3)
                path = None
    elif target is not None:                    # the run's ModelCheckpoint
        e, s = model.epochs_trained, model.steps_trained
        path = target._format(epoch=e + 1 if run.batch else e, step=s, batch=run.batch)
        if not (target.last_path == path and target._last_save[1] == s):   # not just saved
            path = target.save(path, "preempted")
    if progress is not None:
        progress.interrupt()
    signame = flag.received or "a signal on another rank"
    history.stopped_at = {"signal": signame, "epoch": model.epochs_trained,
                          "batch": run.batch, "step": model.steps_trained, "checkpoint": path}
    model._position = state                     # fit(..., resume_from=model.history)
    for cb in cbs:
        cb.on_train_end({"preempted": True})
    raise Preempted(signame, model.epochs_trained, run.batch, model.steps_trained, path,
                    history)
