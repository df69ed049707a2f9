"""``GradientMonitor``: per-layer weight, gradient, update and activation statistics during
``fit``, and a plain-language diagnosis of vanishing and exploding gradients.

Why (course 2, week 1, "Vanishing / exploding gradients"): in a deep net the backward pass
multiplies the gradient by ``W[l]^T diag(g'(z[l]))`` once per layer, so unless that factor has
gain ~1 the gradient shrinks or grows *geometrically* with depth. With tiny weights (or
saturated sigmoid/tanh units, ``g' ~ 0``) the first layers receive almost no gradient and stop
learning; with large weights the gradient norm grows by a constant factor per layer toward the
input and the updates blow up. He (ReLU, var 2/fan_in) and LeCun/Xavier (tanh/sigmoid, var
1/fan_in) initialization keep the gain near 1 (He et al. 2015, "Delving deep into
rectifiers"; Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
neural networks", whose figures are histograms of these very statistics).

What is measured, per Dense layer ``l`` (named ``dense_1`` .. ``dense_L`` like the course's
``W[1]`` .. ``W[L]``), on sampled batches (every ``every``-th batch of an epoch, batch 0
always), averaged over the samples of the epoch:

* ``weight_norm``  ``||W[l]||_F`` after the update;
* ``grad_norm``    ``||dW[l]||_F``, the data-loss gradient backprop wrote (before clipping,
  without the L2 term: ``loss_and_grads(X, y, l2=0)``);
* ``update_norm``  ``||W_new - W_old||_F``, the step the optimizer took (clipping, L2, weight
  decay, momentum and Adam included);
* ``update_ratio`` ``update_norm / ||W_old||_F`` (Karpathy's "update/weight ratio", a healthy
  value is around 1e-3 per step; much larger means a too-high learning rate);
* ``act_mean``, ``act_std`` of the layer's activations ``A[l]`` over the batch (after its
  activation; after BatchNorm+activation when the layer is batch-normalized);
* ``dead_frac`` (ReLU layers): the fraction of units that output 0 for every example of the
  batch (a "dead" unit gets no gradient);
* ``saturated_frac`` (tanh / sigmoid layers): the fraction of activations in the flat tails,
  ``|a| >= saturation`` for tanh and ``|2a - 1| >= saturation`` for sigmoid (the same
  ``|tanh(z/2)|`` cut, since ``sigmoid(z) = (1 + tanh(z/2)) / 2``); their derivative is
  below ``1 - saturation**2`` (tanh) of its peak.

Cost: nothing on unsampled batches but a Python call; on a sampled batch one host copy of the
weights (before the update) and a few BLAS dot products over the weight, gradient and
activation buffers the kernels already filled (no extra forward or backward pass). The
default ``every=16`` keeps it well under 10% of the step time of the 784-256-128-10 net
(``benchmarks/test_bench_monitor.py``, figures in ``benchmarks/RESULTS_monitor.md``). A batch
callback routes ``fit`` off the whole-epoch kernel (it has no per-batch hook); nets small
enough for that kernel pay the step path instead, which is what a monitored run measures.

The diagnosis (``diagnosis`` after each epoch, ``diagnose()``) compares the layers' gradient
RMS per entry, ``grad_norm / sqrt(size)``, so that wide and narrow layers compare:

* exploding: a non-finite gradient, an RMS above ``exploding_threshold``, or a geometric
  trend (least-squares line of log10 RMS against depth) growing toward the input by more
  than ``depth_ratio`` across the net;
* vanishing: an RMS below ``vanishing_threshold``, or the trend shrinking toward the input by
  more than ``depth_ratio`` (trends need at least 3 Dense layers).

Results go to ``model.history`` (so ``History.plot(path, per_layer="grad_norm")`` draws them)
under ``"<stat>/<layer>"`` keys, e.g. ``history.history["grad_norm/dense_3"]``, and to
``monitor.history`` (the same dict of lists) and ``monitor.epoch``. They are added at the
monitor's ``on_epoch_end``, so list it before a ``ModelCheckpoint`` for the checkpoint's
History to hold the epoch's figures.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..kernels import LEAKY_RELU, LINEAR, RELU, SIGMOID, TANH
from .callbacks import Callback

#: The statistics recorded per layer (``dead_frac`` only for ReLU layers, ``saturated_frac``
#: only for tanh / sigmoid layers).
STATS = ("weight_norm", "grad_norm", "update_norm", "update_ratio", "act_mean", "act_std",
         "dead_frac", "saturated_frac")

_REMEDIES_VANISH = ("He initialization for ReLU layers (init=\"he\") or LeCun/Xavier for "
                    "tanh/sigmoid (init=\"lecun\"/\"xavier\") instead of tiny weights; ReLU "
                    "instead of saturating sigmoid/tanh hidden units; batch normalization "
                    "(fd.BatchNorm()); a shallower net")
_REMEDIES_EXPLODE = ("He/LeCun initialization (init=\"he\" / \"lecun\") instead of large "
                     "weights; batch normalization (fd.BatchNorm()); a lower learning rate; "
                     "gradient clipping (e.g. fd.optim.Adam(global_clipnorm=1.0) or "
                     "clipvalue=...)")


def _positive(name, value, upper=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0 or (upper is not None and value >= upper):
        rng = f"in (0, {upper})" if upper is not None else "> 0"
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number {rng}")
    return float(value)


class Diagnosis:
    """The verdict of :meth:`GradientMonitor.diagnose` for one epoch.

    ``vanishing`` / ``exploding`` (bools), ``layers`` (names of the layers concerned),
    ``factor`` (fitted gradient-RMS factor per layer toward the input: < 1 shrinks, > 1
    grows; None with fewer than 3 layers), ``grad_rms`` ({layer: RMS}), ``message`` (plain
    language, with remedies; "healthy" otherwise).
    """

    def __init__(self, epoch, vanishing, exploding, layers, factor, grad_rms, message):
        self.epoch, self.vanishing, self.exploding = epoch, vanishing, exploding
        self.layers, self.factor, self.grad_rms, self.message = layers, factor, grad_rms, message

    @property
    def healthy(self) -> bool:
        return not (self.vanishing or self.exploding)

    def __str__(self):
        return self.message

    def __repr__(self):
        state = "exploding" if self.exploding else "vanishing" if self.vanishing else "healthy"
        return f"Diagnosis(epoch={self.epoch}, {state}, layers={self.layers})"


class GradientMonitor(Callback):
    """Per-layer weight / gradient / update / activation statistics and a vanishing-exploding
    gradient diagnosis during ``fit`` (see the module docstring for every formula).

    Parameters
    ----------
    every : int >= 1, default 16
        Sample batch ``b`` of each epoch when ``b % every == 0`` (batch 0 always). 1 samples
        every batch (exact epoch means, higher cost).
    vanishing_threshold : float > 0, default 1e-7
        A layer whose gradient RMS per entry is below this is flagged as vanishing.
    exploding_threshold : float > vanishing_threshold, default 10
        A layer whose gradient RMS per entry is above this is flagged as exploding (a
        mean-over-batch cost of a healthy net has per-entry gradients far below 1).
    depth_ratio : float > 1, default 100
        Flag a geometric trend when the fitted gradient RMS changes by more than this factor
        from the last Dense layer to the first (at least 3 Dense layers).
    saturation : float in (0, 1), default 0.99
        ``|a|`` (tanh) or ``|2a - 1|`` (sigmoid) at or above which a unit counts as saturated.
    verbose : int >= 0, default 1
        1 prints the diagnosis when it first flags a problem and whenever it changes.

    Attributes after ``fit``: ``history`` ({"grad_norm/dense_1": [per epoch], ...}),
    ``epoch``, ``layers`` (names), ``diagnosis`` (the last epoch's :class:`Diagnosis`),
    ``diagnoses`` (one per epoch). :meth:`report` gives a table of the last epoch.

    Example
    -------
    >>> mon = fd.GradientMonitor(every=8)
    >>> h = model.fit(X, y, optimizer=fd.optim.Adam(), epochs=5, callbacks=[mon])
    >>> print(mon.report()); h.plot("grads.png", per_layer="grad_norm")
    """

    def __init__(self, every=16, vanishing_threshold=1e-7, exploding_threshold=10.0,
                 depth_ratio=100.0, saturation=0.99, verbose=1):
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every={every!r} is invalid; expected an integer >= 1 (sample "
                             "every n-th batch)")
        self.every = int(every)
        self.vanishing_threshold = _positive("vanishing_threshold", vanishing_threshold)
        self.exploding_threshold = _positive("exploding_threshold", exploding_threshold)
        if self.exploding_threshold <= self.vanishing_threshold:
            raise ValueError(f"exploding_threshold={exploding_threshold!r} is invalid; expected "
                             f"a number > vanishing_threshold={vanishing_threshold!r}")
        if isinstance(depth_ratio, bool) or not isinstance(depth_ratio, numbers.Real) \
                or not math.isfinite(depth_ratio) or depth_ratio <= 1:
            raise ValueError(f"depth_ratio={depth_ratio!r} is invalid; expected a finite "
                             "number > 1 (the factor across the net's depth)")
        self.depth_ratio = float(depth_ratio)
        self.saturation = _positive("saturation", saturation, upper=1.0)
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose < 0:
            raise ValueError(f"verbose={verbose!r} is invalid; expected an integer >= 0")
        self.verbose = int(verbose)
        self.history, self.epoch, self.diagnoses = {}, [], []
        self.diagnosis = None
        self.layers = []

    # --- setup ----------------------------------------------------------------------------
    def set_model(self, model):
        from ..nn.layers import Dense
        super().set_model(model)
        p = model.params
        groups = []            # (name, op index, W offset, size, stats op index, activation)
        n_dense = 0
        for i, op in enumerate(model._ops):
            if isinstance(op, Dense):
                n_dense += 1
                groups.append([f"dense_{n_dense}", i, p.offset(op._index, "W"),
                               op.units * op.input_dim, i, op.runtime_activation])
            elif groups and getattr(op, "runtime_activation", LINEAR) != LINEAR:
                groups[-1][4:6] = [i, op.runtime_activation]   # BatchNorm(+activation)
        self._groups = groups
        self.layers = [g[0] for g in groups]
        self._bk = model._bk
        self._n_w = p.n_decay
        self._w_old = np.empty(self._n_w, dtype=p.dtype)
        self._diff = np.empty_like(self._w_old)
        self._acc = None

    def on_train_begin(self, logs=None):
        self.history, self.epoch, self.diagnoses, self.diagnosis = {}, [], [], None
        self._printed = (False, False)      # print only when the verdict changes from healthy

    def on_epoch_begin(self, epoch, logs=None):
        self._acc, self._count, self._sampled = {}, 0, False
        self._epoch_now = epoch
        resume, self._resume = getattr(self, "_resume", None), None
        if resume is not None and resume["epoch"] == epoch and resume["every"] == self.every:
            self._acc, self._count = dict(resume["sums"]), resume["count"]   # resumed midway

    def get_state(self):
        """The sums of the epoch in progress, so an epoch resumed midway records the same
        means in the History."""
        if not getattr(self, "_count", 0):
            return None
        return {"epoch": int(self._epoch_now), "every": self.every, "count": int(self._count),
                "sums": {k: float(v) for k, v in self._acc.items()}}

    def set_state(self, state, weights=None):
        self._resume = state

    # --- per batch ------------------------------------------------------------------------
    def on_batch_begin(self, batch, logs=None):
        self._sampled = batch % self.every == 0
        if self._sampled:            # the weights before this batch's update
            w = self.model.params.data[:self._n_w]
            self._w_old[...] = self._bk.to_numpy(w) if self._bk.on_device else w

    def on_batch_end(self, batch, logs=None):
        if not self._sampled:
            return
        self._sampled = False
        model, bk = self.model, self._bk
        ws = None
        if logs:        # the batch's workspace: dense rows, or sparse (CSR) ones
            m = int(logs["size"])
            ws = model._workspaces.get(m) or model._workspaces.get(("csr", m))
        p = model.params
        w_new = bk.to_numpy(p.data[:self._n_w]) if bk.on_device else p.data[:self._n_w]
        grad = bk.to_numpy(p.grad[:self._n_w]) if bk.on_device else p.grad[:self._n_w]
        np.subtract(w_new, self._w_old, out=self._diff)
        acc = self._acc
        for name, op_i, off, size, st_i, act in self._groups:
            sl = slice(off, off + size)
            row = _norms(w_new[sl], grad[sl], self._diff[sl], self._w_old[sl])
            if ws is not None:
                A = ws.layers[st_i].A
                row.update(_activation_stats(bk.to_numpy(A) if bk.on_device else A, act,
                                             self.saturation))
            for k, v in row.items():
                acc[f"{k}/{name}"] = acc.get(f"{k}/{name}", 0.0) + v
        self._count += 1

    # --- per epoch ------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if not self._count:
            return
        means = {k: v / self._count for k, v in self._acc.items()}
        self.epoch.append(epoch)
        hist = getattr(self.model, "history", None)
        target = hist.history if hist is not None and hasattr(hist, "history") else None
        for k, v in means.items():
            self.history.setdefault(k, []).append(v)
            if target is not None:
                target.setdefault(k, []).append(v)
        self.diagnosis = self.diagnose(epoch)
        self.diagnoses.append(self.diagnosis)
        if self.verbose:
            key = (self.diagnosis.vanishing, self.diagnosis.exploding)
            if key != self._printed:
                print(f"GradientMonitor, epoch {epoch + 1}: {self.diagnosis.message}")
                self._printed = key

    # --- diagnosis ------------------------------------------------------------------------
    def diagnose(self, epoch=-1):
        """The :class:`Diagnosis` of a recorded epoch (default: the last)."""
        if not self.epoch:
            raise RuntimeError("GradientMonitor has recorded no epoch yet; use it in "
                               "model.fit(..., callbacks=[monitor])")
        i = self.epoch.index(epoch) if epoch >= 0 else epoch
        ep = self.epoch[i]
        sizes = {g[0]: g[3] for g in self._groups}
        rms = {n: self.history[f"grad_norm/{n}"][i] / math.sqrt(sizes[n]) for n in self.layers}
        return diagnose_gradients(rms, self.vanishing_threshold, self.exploding_threshold,
                                  self.depth_ratio, epoch=ep)

    def report(self) -> str:
        """A table of the last recorded epoch (one row per layer) and the diagnosis."""
        if not self.epoch:
            return "GradientMonitor: nothing recorded yet"
        cols = [("grad_norm", "|dW|"), ("weight_norm", "|W|"), ("update_ratio", "|dW step|/|W|"),
                ("act_mean", "act mean"), ("act_std", "act std"), ("dead_frac", "dead"),
                ("saturated_frac", "saturated")]
        head = f"{'layer':<10}" + "".join(f"{c[1]:>15}" for c in cols)
        lines = [head, "-" * len(head)]
        for n in self.layers:
            cells = []
            for k, _ in cols:
                s = self.history.get(f"{k}/{n}")
                cells.append(f"{s[-1]:>15.4g}" if s else f"{'-':>15}")
            lines.append(f"{n:<10}" + "".join(cells))
        return "\n".join(lines + [str(self.diagnosis)])

    def __repr__(self):
        return (f"GradientMonitor(every={self.every}, vanishing_threshold="
                f"{self.vanishing_threshold}, exploding_threshold={self.exploding_threshold}, "
                f"depth_ratio={self.depth_ratio}, saturation={self.saturation})")


def _dot(x):
    """sum(x^2) through BLAS (float32 inputs accumulate in float32: ~1e-7 relative)."""
    return float(np.dot(x, x))


def _norms(w_new, grad, diff, w_old):
    w_old_n = math.sqrt(_dot(w_old))
    upd = math.sqrt(_dot(diff))
    return {"weight_norm": math.sqrt(_dot(w_new)), "grad_norm": math.sqrt(_dot(grad)),
            "update_norm": upd, "update_ratio": upd / w_old_n if w_old_n > 0 else math.inf}


def _activation_stats(A, act, saturation):
    """Mean, std, and the dead (ReLU) or saturated (tanh, sigmoid) fraction of A (m, units)."""
    mean = float(A.mean(dtype=np.float64))
    out = {"act_mean": mean, "act_std": float(A.std(dtype=np.float64))}
    if act == RELU:
        out["dead_frac"] = float(np.count_nonzero(A.max(axis=0) <= 0)) / A.shape[1]
    elif act == TANH:
        out["saturated_frac"] = float(np.count_nonzero(np.abs(A) >= saturation)) / A.size
    elif act == SIGMOID:
        lo, hi = (1.0 - saturation) / 2.0, (1.0 + saturation) / 2.0
        out["saturated_frac"] = float(np.count_nonzero((A <= lo) | (A >= hi))) / A.size
    elif act == LEAKY_RELU:
        pass                      # never dead nor saturated: no extra statistic
    return out


def _span(names):
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}" \
        if len(names) > 3 else ", ".join(names)


def diagnose_gradients(grad_rms, vanishing_threshold=1e-7, exploding_threshold=10.0,
                       depth_ratio=100.0, epoch=None) -> Diagnosis:
    """Diagnose per-layer gradient RMS values ``{layer: rms}`` ordered from input to output
    (the rules of :class:`GradientMonitor`; usable on any sequence of per-layer figures)."""
    names = list(grad_rms)
    vals = np.array([grad_rms[n] for n in names], dtype=np.float64)
    nonfinite = [n for n, v in zip(names, vals) if not math.isfinite(v)]
    big = [n for n, v in zip(names, vals) if math.isfinite(v) and v > exploding_threshold]
    small = [n for n, v in zip(names, vals) if v < vanishing_threshold]
    factor, trend_v, trend_e = None, [], []
    ok = np.isfinite(vals) & (vals > 0)
    if ok.sum() >= 3:
        depth = np.arange(len(vals), dtype=np.float64)[ok]
        slope = np.polyfit(depth, np.log10(vals[ok]), 1)[0]   # log10 RMS per layer, forward
        factor = float(10.0 ** -slope)                         # per layer toward the input
        spread = slope * (len(vals) - 1)
        limit = math.log10(depth_ratio)
        last = vals[ok][-1]
        if spread >= limit:
            trend_v = [n for n, v, o in zip(names, vals, ok) if o and v * depth_ratio < last
                       or (not o and math.isfinite(v))]
        elif -spread >= limit:
            trend_e = [n for n, v, o in zip(names, vals, ok) if o and v > last * depth_ratio]
    exploding = bool(nonfinite or big or trend_e or (factor is not None and factor > 1
                                                     and -spread >= limit))
    vanishing = not exploding and bool(small or trend_v or (factor is not None and factor < 1
                                                           and spread >= limit))
    rms_txt = ", ".join(f"{n} {v:.2g}" for n, v in zip([names[0], names[-1]],
                                                       [vals[0], vals[-1]]))
    if exploding:
        layers = [n for n in names if n in set(nonfinite + big + trend_e)] or names[:1]
        parts = ["Exploding gradients"]
        if factor is not None and factor > 1:
            parts.append(f": the gradient grows by a factor of about {factor:.3g} per layer "
                         f"toward the input (RMS per entry: {rms_txt})")
        if nonfinite:
            parts.append(f"; non-finite gradients in {_span(nonfinite)}")
        if big:
            parts.append(f"; gradient RMS above {exploding_threshold:g} in {_span(big)}")
        msg = "".join(parts) + f". Layers concerned: {_span(layers)}. Remedies: " \
            + _REMEDIES_EXPLODE + "."
    elif vanishing:
        layers = [n for n in names if n in set(small + trend_v)] or names[:1]
        parts = ["Vanishing gradients"]
        if factor is not None and factor < 1:
            parts.append(f": the gradient shrinks by a factor of about {factor:.3g} per layer "
                         f"toward the input (RMS per entry: {rms_txt})")
        if small:
            parts.append(f"; gradient RMS below {vanishing_threshold:g} in {_span(small)}")
        msg = "".join(parts) + f". Layers {_span(layers)} barely learn. Remedies: " \
            + _REMEDIES_VANISH + "."
    else:
        layers = []
        msg = "Gradients look healthy" + (f" (factor {factor:.3g} per layer toward the input; "
                                          f"RMS per entry: {rms_txt})" if factor else "") + "."
    return Diagnosis(epoch, vanishing, exploding, layers, factor, dict(grad_rms), msg)
