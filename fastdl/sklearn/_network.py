"""The fastdl network behind an estimator: construction, scikit-learn's initialization,
export of ``coefs_``/``intercepts_`` and a pickle-safe snapshot.

Layout per hidden layer (docs/design.md order): ``Dense(h, activation)``, or with ``batchnorm=True``
``Dense(h)`` (no bias: beta takes its role) -> ``BatchNorm()`` -> ``Activation``; then
``Dropout(keep_prob)`` when keep_prob < 1. The output layer is ``Dense(n_outputs_)`` with the
activation scikit-learn calls ``out_activation_``: softmax (multiclass), logistic (binary and
multilabel), identity (regression), exp (``loss="poisson"``), fused with its loss.
"""

from __future__ import annotations

import numpy as np

from .. import optim
from ..nn import Activation, BatchNorm, Dense, Dropout, Sequential
from ._params import FD_ACTIVATION

#: out_activation_ -> (fastdl output activation, fastdl loss)
OUTPUTS = {"softmax": ("softmax", "categorical_crossentropy"),
           "logistic": ("sigmoid", "binary_crossentropy"),
           "identity": ("linear", "mse"),
           "exp": ("exp", "poisson")}


def build_model(sizes, n_in, n_out, activation, out_activation, keep_probs, batchnorm, dtype,
                seed, backend, compute_dtype=None, allow_slow=False):
    """An untrained ``fd.Sequential`` for this architecture (weights set by ``init_sklearn``)."""
    act = FD_ACTIVATION[activation]
    layers = []
    for h, keep in zip(sizes, keep_probs):
        if batchnorm:
            layers += [Dense(h, init="xavier"), BatchNorm()]
            if act != "linear":
                layers.append(Activation(act))
        else:
            layers.append(Dense(h, activation=act, init="xavier"))
        if keep < 1.0:
            layers.append(Dropout(keep_prob=keep))
    out_act, loss = OUTPUTS[out_activation]
    layers.append(Dense(n_out, activation=out_act, init="xavier"))
    return Sequential(layers, input_dim=n_in, loss=loss, dtype=dtype, seed=seed,
                      backend=backend, compute_dtype=compute_dtype, allow_slow=allow_slow)


def _slots(model):
    """(layer, [indices into get_weights()]) for every layer, in order."""
    out, j = [], 0
    for i, layer in enumerate(model.layers):
        n = len(layer.param_specs(i)) + len(getattr(layer, "state_names", ()))
        out.append((layer, list(range(j, j + n))))
        j += n
    return out


def init_sklearn(model, activation, rng):
    """scikit-learn's initialization (Glorot & Bengio 2010, uniform): for each Dense layer in
    order, ``coef ~ U(-r, r)`` of shape (fan_in, fan_out), then ``intercept ~ U(-r, r)``, with
    ``r = sqrt(6 / (fan_in + fan_out))`` (``sqrt(2 / ...)`` for logistic hidden units), drawn
    from ``rng`` in scikit-learn's order, so the same ``random_state`` gives the same initial
    weights as ``sklearn.neural_network``. fastdl stores ``W = coef.T``. A Dense followed by
    BatchNorm has no bias (its draw is made and discarded, keeping the stream aligned); BatchNorm
    starts at gamma = 1, beta = 0."""
    factor = 2.0 if activation == "logistic" else 6.0
    weights = model.get_weights()
    for layer, idx in _slots(model):
        if not isinstance(layer, Dense):
            continue
        fan_in, fan_out = layer.input_dim, layer.units
        r = np.sqrt(factor / (fan_in + fan_out))
        coef = rng.uniform(-r, r, (fan_in, fan_out))
        intercept = rng.uniform(-r, r, fan_out)
        weights[idx[0]] = coef.T
        if layer.use_bias:
            weights[idx[1]] = intercept
    model.set_weights(weights)


def export_coefs(model):
    """(coefs_, intercepts_) in scikit-learn's layout: ``coefs_[i]`` is (fan_in, fan_out) (fastdl's
    ``W.T``). With batch norm, the inference-mode BatchNorm after a Dense is folded in:
    ``s = gamma / sqrt(running_var + eps)``, ``coef = W.T * s``, ``intercept = beta -
    running_mean * s``, so ``act(X @ coef + intercept)`` is exactly what ``predict`` computes."""
    weights = model.get_weights()
    coefs, intercepts = [], []
    slots = _slots(model)
    for k, (layer, idx) in enumerate(slots):
        if not isinstance(layer, Dense):
            continue
        W = weights[idx[0]].astype(model.dtype)
        b = weights[idx[1]] if layer.use_bias else np.zeros(layer.units, model.dtype)
        nxt = slots[k + 1] if k + 1 < len(slots) else None
        if nxt is not None and isinstance(nxt[0], BatchNorm):
            gamma, beta, mean, var = (weights[j].astype(np.float64) for j in nxt[1])
            s = gamma / np.sqrt(var + nxt[0].eps)
            coefs.append((W.T * s).astype(model.dtype))
            intercepts.append((beta - mean * s + b * s).astype(model.dtype))
        else:
            coefs.append(np.array(W.T, dtype=model.dtype, order="C"))
            intercepts.append(np.array(b, dtype=model.dtype))
    return coefs, intercepts


def coef_views(model):
    """(coefs_, intercepts_) as views of the model's parameters ((fan_in, fan_out) = ``W.T``,
    a transposed view), so that editing them in place edits the network, as scikit-learn's
    live arrays do; None where views cannot be had (a BatchNorm folded in, or parameters in
    device memory)."""
    if model._bk.on_device or any(isinstance(layer, BatchNorm) for layer in model.layers):
        return None
    coefs, intercepts = [], []
    for layer in model.layers:
        if isinstance(layer, Dense):
            if not layer.use_bias:
                return None
            coefs.append(layer.W.T)
            intercepts.append(layer.b)
    return coefs, intercepts


def import_coefs(model, coefs, intercepts):
    """Write scikit-learn-layout ``coefs``/``intercepts`` (lists of (fan_in, fan_out) and
    (fan_out,) arrays, validated by the caller) into ``model``: the inverse of ``export_coefs``.
    A BatchNorm after a Dense keeps gamma and its running statistics and takes the rest:
    ``W = (coef / s).T`` and ``beta = intercept + running_mean * s`` with ``s = gamma /
    sqrt(running_var + eps)``, so the inference-mode network computes exactly
    ``act(X @ coef + intercept)``; a unit with gamma = 0 (s = 0) cannot take a new coef."""
    weights = model.get_weights()
    slots = _slots(model)
    dense = [k for k, (layer, _) in enumerate(slots) if isinstance(layer, Dense)]
    for j, k in enumerate(dense):
        layer, idx = slots[k]
        coef = np.asarray(coefs[j], dtype=np.float64)
        intercept = np.asarray(intercepts[j], dtype=np.float64)
        nxt = slots[k + 1] if k + 1 < len(slots) else None
        if nxt is not None and isinstance(nxt[0], BatchNorm):
            gamma, _, mean, var = (weights[i].astype(np.float64) for i in nxt[1])
            s = gamma / np.sqrt(var + nxt[0].eps)
            if (s == 0).any():
                raise ValueError(f"coefs_[{j}] cannot be loaded into the batch-normalized layer "
                                 f"{j}: its BatchNorm gamma is 0 for unit(s) "
                                 f"{np.flatnonzero(s == 0).tolist()}, which multiplies the "
                                 "weights by 0; fit anew with warm_start=False")
            weights[idx[0]] = (coef / s).T
            if layer.use_bias:
                weights[idx[1]] = np.zeros(layer.units)
            weights[nxt[1][1]] = intercept + mean * s
        else:
            weights[idx[0]] = coef.T
            if layer.use_bias:
                weights[idx[1]] = intercept
            elif np.any(intercept != 0):
                raise ValueError(f"intercepts_[{j}] must be 0: layer {j} has no bias")
    model.set_weights(weights)


def make_optimizer(solver, lr, momentum, nesterov, beta_1, beta_2, epsilon, backend):
    """fastdl's optimizer for a stochastic solver, in scikit-learn's update rule:

    * "sgd": ``V = momentum V - lr g; W += V`` (``+ momentum V - lr g`` with Nesterov) is
      ``fd.optim.Momentum(form="pytorch")`` (``v = momentum v + g; W -= lr v``, i.e. ``V = -lr
      v``) while lr is constant; the estimator rescales ``v`` when lr changes (see
      ``_solvers.rescale_velocity``) so it stays exact. momentum = 0 is plain ``SGD``.
    * "adam": ``fd.optim.Adam``; see ``docs/sklearn.md`` for the placement of epsilon.
    ``lr``/``epsilon`` arrive already scaled to fastdl's loss (``_solvers.GradScale``)."""
    if solver == "adam":
        return optim.Adam(lr=lr, beta1=beta_1, beta2=beta_2, eps=epsilon, backend=backend)
    if momentum > 0:
        return optim.Momentum(lr=lr, beta=momentum, nesterov=nesterov, form="pytorch",
                              backend=backend)
    return optim.SGD(lr=lr, backend=backend)


def model_state(model):
    """A picklable snapshot of a Sequential: its config, weights (BatchNorm state included)
    and counters; plain Python and NumPy objects only (no Numba or device objects)."""
    return {"config": model.get_config(), "backend": model.backend_name,
            "weights": model.get_weights(), "epochs_trained": model.epochs_trained,
            "steps_trained": model.steps_trained, "allow_slow": model.allow_slow}


def model_from_state(state):
    model = Sequential.from_config(state["config"], backend=state["backend"],
                                   allow_slow=state.get("allow_slow", False))
    model.set_weights(state["weights"])
    model.epochs_trained = state["epochs_trained"]
    model.steps_trained = state["steps_trained"]
    return model
