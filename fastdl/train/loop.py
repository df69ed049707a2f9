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

import sys
import time

import numpy as np

from .. import config
from .._validation import check_float, check_int, check_rows
from .callbacks import Callback, History


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost; the model keeps its last finite parameters."""


def check_optimizer(optimizer):
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer={optimizer!r} is not an optimizer; expected an object with "
                        "step(params, grads, l2=..., n_l2=...) such as fd.optim.SGD(lr=0.01)")


def epoch_order(seed, epoch, m, shuffle=True):
    """The example order of one epoch: a pure function of (seed, epoch), so a resumed run sees
    exactly the batches an uninterrupted one would."""
    if not shuffle:
        return np.arange(m, dtype=np.int64)
    return np.random.default_rng([seed, 0x5EED, epoch]).permutation(m).astype(np.int64)


def _check_fit_args(model, X, y, optimizer, epochs, batch_size, l2, validation_data, callbacks,
                    verbose, lr_schedule):
    check_int("epochs", epochs, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    check_int("verbose", verbose, minimum=0)
    check_float("l2", l2, minimum=0.0)
    check_optimizer(optimizer)
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"lr_schedule={lr_schedule!r} must be callable (epoch -> lr)")
    callbacks = list(callbacks or [])
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}]={cb!r} is not a fastdl Callback")
    Xc, Yc = model._XY(X, y)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (X_dev, y_dev)")
        Xv = model._X(validation_data[0], "validation_data[0]")
        from .._validation import as_targets
        yv = as_targets("validation_data[1]", validation_data[1])
        check_rows(Xv, yv, "validation_data[0]", "validation_data[1]")
        val = (Xv, model.loss.encode(yv, model.output_dim, model.dtype, "validation_data[1]"))
    return Xc, Yc, val, callbacks


def _fused_layout(model, optimizer, wants_batches):
    """The fused-epoch kernel's arguments, or None when the step path must be used."""
    bk = model._bk
    if not (bk.fused_epoch and model._dense_only) or wants_batches:
        return None
    if max(op.units * op.input_dim for op in model._ops) > config.FUSED_EPOCH_MAX_WEIGHTS:
        return None
    alphas = {op.runtime_alpha for op in model._ops if op.runtime_activation == 2}
    if len(alphas) > 1:
        return None
    optimizer.prepare(model.params.size, model.dtype, bk)
    spec = optimizer.fused_spec()
    if spec is None:
        return None
    p = model.params
    layout = np.array([[p.offset(op._index, "W"),
                        p.offset(op._index, "b") if op.use_bias else -1,
                        op.units, op.input_dim, op.runtime_activation] for op in model._ops],
                      dtype=np.int64)
    return layout, (alphas.pop() if alphas else 0.01), spec


def _run_fused(model, optimizer, plan, Xd, Yd, order, bs, l2):
    layout, alpha, (opt_kind, hyper, state) = plan
    m = order.shape[0]
    nb = (m + bs - 1) // bs
    costs = np.empty(nb, dtype=np.float64)
    units = int(layout[:, 2].sum())
    ws_key = ("fused", bs)
    ws = model._workspaces.get(ws_key)
    if ws is None:
        ws = model._workspaces[ws_key] = np.empty(bs * (model.input_dim + 2 * units), model.dtype)
    model._bk.k.train_epoch(costs, model.params.data, model.params.grad, state, ws, Xd, Yd, order,
                            bs, layout, model.loss.code, l2, model.params.n_decay, alpha,
                            opt_kind, hyper, optimizer.iterations)
    optimizer.advance(nb)
    return costs


def _diverged(model, snapshot, epoch, batch, cost):
    if not np.isfinite(model.params.snapshot()).all():
        model.params.restore(snapshot)
        kept = f"restored to the start of epoch {epoch}"
    else:
        kept = "kept from the last step with a finite cost"
    raise DivergenceError(f"training diverged: the cost became {cost} at epoch {epoch}, batch "
                          f"{batch}; stopped before applying that update, parameters {kept}. "
                          "Try a lower learning rate, input standardization or gradient checking.")


def _run_steps(model, optimizer, Xd, Yd, order, bs, l2, batch_cbs, epoch, snapshot, check_each):
    bk, k, p = model._bk, model._bk.k, model.params
    m = order.shape[0]
    nb = (m + bs - 1) // bs
    losses = bk.zeros((nb,), np.float64)
    sqs = bk.zeros((nb,), np.float64)
    order_d = bk.asarray(order)
    sizes = np.minimum(bs, m - np.arange(nb) * bs)
    for b in range(nb):
        mb = int(sizes[b])
        idx = order_d[b * bs:b * bs + mb]
        ws = model._workspace(mb)
        k.gather_rows(ws.Xb, Xd, idx)
        k.gather_rows(ws.Yb, Yd, idx)
        model._step_costs(ws.Xb, ws.Yb, ws, l2, losses[b:b + 1], sqs[b:b + 1])
        if check_each:
            cost = float(losses[b]) + (l2 / (2.0 * mb) * float(sqs[b]) if l2 else 0.0)
            if not np.isfinite(cost):
                _diverged(model, snapshot, epoch, b, cost)
        optimizer.step(p.data, p.grad, l2=l2 / mb, n_l2=p.n_decay)
        for cb in batch_cbs:
            cb.on_batch_end(b, {"loss": cost, "size": mb})
    losses, sqs = bk.to_numpy(losses), bk.to_numpy(sqs)
    return losses + (l2 / (2.0 * sizes)) * sqs if l2 else losses


def fit(model, X, y, optimizer=None, epochs=1, batch_size=64, l2=0.0, validation_data=None,
        callbacks=None, verbose=1, shuffle=True, lr_schedule=None):
    from ..optim import SGD
    if optimizer is None:
        optimizer = SGD(lr=0.01)
    Xc, Yc, val, callbacks = _check_fit_args(model, X, y, optimizer, epochs, batch_size, l2,
                                             validation_data, callbacks, verbose, lr_schedule)
    l2 = float(l2)
    bk = model._bk
    Xd, Yd = bk.asarray(Xc), bk.asarray(Yc)
    m = Xc.shape[0]
    bs = min(int(batch_size), m)
    history = History()
    cbs = [history] + callbacks
    for cb in cbs:
        cb.set_model(model)
    batch_cbs = [cb for cb in cbs if type(cb).wants_batches()]
    plan = _fused_layout(model, optimizer, bool(batch_cbs))
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin({})
    last_epoch = model.epochs_trained + int(epochs)
    for _ in range(int(epochs)):
        e = model.epochs_trained
        if lr_schedule is not None:
            optimizer.lr = lr_schedule(e)
        for cb in cbs:
            cb.on_epoch_begin(e, {})
        order = epoch_order(model.seed, e, m, shuffle)
        snapshot = model.params.snapshot()
        opt_state = optimizer.state_dict()
        t0 = time.perf_counter()
        costs = None
        if plan is not None:
            costs = _run_fused(model, optimizer, plan, Xd, Yd, order, bs, l2)
            if not np.isfinite(costs).all():       # redo the epoch step by step to stop exactly
                model.params.restore(snapshot)
                optimizer.load_state_dict(opt_state)
                costs = None
        if costs is None:
            check_each = not bk.on_device or bool(batch_cbs)
            costs = _run_steps(model, optimizer, Xd, Yd, order, bs, l2, batch_cbs, e, snapshot,
                               check_each)
            if not np.isfinite(costs).all():       # device: found at the end of the epoch
                model.params.restore(snapshot)
                optimizer.load_state_dict(opt_state)
                _run_steps(model, optimizer, Xd, Yd, order, bs, l2, batch_cbs, e, snapshot, True)
        bk.synchronize()
        elapsed = time.perf_counter() - t0
        sizes = np.minimum(bs, m - np.arange(costs.shape[0]) * bs)
        logs = {"loss": float(np.dot(costs, sizes) / m), "lr": float(optimizer.lr)}
        if val is not None:
            ev = model.evaluate(*val)
            logs.update({f"val_{k}": v for k, v in ev.items()})
        model.epochs_trained += 1
        for cb in cbs:
            cb.on_epoch_end(e, logs)
        if verbose:
            metrics = " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())
            print(f"Epoch {e + 1}/{last_epoch} - "
                  f"{elapsed:.3f}s ({m / max(elapsed, 1e-9):,.0f} samples/s) - {metrics}",
                  file=sys.stdout, flush=True)
        if model.stop_training:
            break
    for cb in cbs:
        cb.on_train_end({})
    return history
