"""Optimizer updates over the flat parameter buffer (reference: the spec).

Legend
------
params   (n,)  flat parameters, updated in place. Weights come first: the course's L2 term, which
               applies to weights only, is the prefix ``[0, n_l2)``.
shadow   (k,)  uint16, k <= n: the bfloat16 copy of ``params[:k]`` (the weights), written by the
               update from the parameters it has just computed, ``shadow = bf16(params[:k])``
               (``reference/precision.py``): the GEMM operands of a mixed-precision model, so
               no conversion pass of its own exists. Size 0: skip (float32/float64 compute).
               Only float32 params have a shadow.
<state>  (n,)  one 1-D array per state row (velocity, moments), updated in place.
grads    (n,)  gradients of the loss without its L2 term; never modified.
scalars        Python numbers; the arithmetic runs in the dtype of ``params``.
sum_sq   (1,)  float64, ``sum(grads**2)`` from ``reductions.sum_squares``; read (on the device,
               so a GPU step needs no host sync) only when ``max_norm`` is finite: pass any
               (1,) float64 array otherwise
max_norm       global-norm clipping bound, ``inf`` = no norm clipping
clip_value     element clipping bound, ``inf`` = no value clipping
l2, n_l2       the course's L2 gradient term, ``l2 = lambda / m`` on the first ``n_l2`` entries.

Every kernel first forms the effective gradient: the clipped data-loss gradient, then the
coupled terms (as PyTorch's ``weight_decay``, added inside ``step()`` after clipping):

    coef = min(1, max_norm / (sqrt(sum_sq[0]) + 1e-6))   (float64; 1 when max_norm is inf)
    g = clip(grads * coef, -clip_value, clip_value)     (skipped when both bounds are inf)
    g += weight_decay * params                          (all entries)
    g[:n_l2] += l2 * params[:n_l2]                      (weights only: the loss's L2 term)

The clipping line is PyTorch's ``torch.nn.utils.clip_grad_norm_`` (``clip_coef = max_norm /
(total_norm + 1e-6)``, clamped to 1; ``tf.clip_by_global_norm`` up to the 1e-6) followed by
``clip_grad_value_`` (``clamp(-c, c)``). A NaN norm gives coef = NaN (PyTorch's clamp keeps
it), and NaN gradients stay NaN. With a finite ``max_norm`` above the norm, coef = 1 and
``grads * 1`` is ``grads`` exactly. ``grads`` is never modified: the clipped gradient exists
only inside the update, so clipping costs no extra pass over memory (only the ``sum_squares``
reduction before, for the norm).

Argument order is the same in every backend: params, shadow, state rows, grads,
hyperparameters, then the effective-gradient arguments ``sum_sq, max_norm, clip_value, l2, n_l2``
last.

sgd_update(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2, n_l2)
    p <- p - lr * g

momentum_update(params, shadow, velocity, grads, lr, beta, dampening, nesterov, weight_decay,
                sum_sq, max_norm, clip_value, l2, n_l2)
    v <- beta * v + (1 - dampening) * g
    d <- (1 - dampening) * g + beta * v    if nesterov    else    v
    p <- p - lr * d
    dampening = beta is the course's EWA form; dampening = 0 is PyTorch's/the classic form.
    With dampening = 0 the Nesterov direction is PyTorch's ``g + beta * v``.

rmsprop_update(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
               max_norm, clip_value, l2, n_l2)
    s <- beta * s + (1 - beta) * g^2
    p <- p - lr * g / (sqrt(s) + eps)

adam_update(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
            decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2)
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^step),   v_hat = v / (1 - beta2^step)       (step is 1-based)
    p <- p - lr * decoupled_decay * p - lr * m_hat / (sqrt(v_hat) + eps)
    decoupled_decay > 0 is AdamW (Loshchilov & Hutter; PyTorch/Keras scale it by lr). The decay
    uses p before this step's update, as PyTorch's ``p.mul_(1 - lr * wd)`` does first.
"""

import math

import numpy as np

from .precision import to_bfloat16

#: PyTorch's guard against a zero norm in ``clip_grad_norm_``.
NORM_EPS = 1e-6

#: a (1,) float64 ``sum_sq`` for unclipped calls (never read when ``max_norm`` is inf).
NO_SUM_SQ = np.zeros(1)
#: an empty ``shadow`` (no bfloat16 copy of the weights).
NO_SHADOW = np.zeros(0, np.uint16)


def _write_shadow(shadow, params):
    if shadow.size:
        to_bfloat16(shadow, params[:shadow.shape[0]])


def _clip_coefficient(sum_sq, max_norm):
    """min(1, max_norm / (sqrt(sum_sq) + 1e-6)) in float64; 1 when max_norm is inf; NaN
    propagates (PyTorch's ``clamp(max=1)`` keeps a NaN)."""
    if math.isinf(max_norm):
        return 1.0
    coef = max_norm / (math.sqrt(sum_sq) + NORM_EPS) if sum_sq >= 0 else math.nan
    if coef > 1.0:
        coef = 1.0
    return coef


def _effective_grad(params, grads, sum_sq, max_norm, clip_value, weight_decay, l2, n_l2):
    g = grads.copy()
    max_norm, clip_value = float(max_norm), float(clip_value)
    if not (math.isinf(max_norm) and math.isinf(clip_value)):
        t = grads.dtype.type
        coef = 1.0 if math.isinf(max_norm) else _clip_coefficient(float(sum_sq[0]), max_norm)
        c = t(clip_value)
        np.multiply(g, t(coef), out=g)
        np.clip(g, -c, c, out=g)
    if weight_decay != 0.0:
        g += weight_decay * params
    if l2 != 0.0 and n_l2 > 0:
        g[:n_l2] += l2 * params[:n_l2]
    return g


def sgd_update(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    lr, weight_decay, l2 = float(lr), float(weight_decay), float(l2)
    g = _effective_grad(params, grads, sum_sq, max_norm, clip_value, weight_decay, l2, int(n_l2))
    params -= lr * g
    _write_shadow(shadow, params)


def momentum_update(params, shadow, velocity, grads, lr, beta, dampening, nesterov, weight_decay,
                    sum_sq, max_norm, clip_value, l2, n_l2):
    lr, beta, dampening = float(lr), float(beta), float(dampening)
    g = _effective_grad(params, grads, sum_sq, max_norm, clip_value, float(weight_decay),
                        float(l2), int(n_l2))
    velocity *= beta
    velocity += (1.0 - dampening) * g
    if nesterov:
        d = (1.0 - dampening) * g + beta * velocity
    else:
        d = velocity
    params -= lr * d
    _write_shadow(shadow, params)


def rmsprop_update(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
                   max_norm, clip_value, l2, n_l2):
    lr, beta, eps = float(lr), float(beta), float(eps)
    g = _effective_grad(params, grads, sum_sq, max_norm, clip_value, float(weight_decay),
                        float(l2), int(n_l2))
    square_avg *= beta
    square_avg += (1.0 - beta) * g * g
    params -= lr * g / (np.sqrt(square_avg) + eps)
    _write_shadow(shadow, params)


def adam_update(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    lr, beta1, beta2, eps = float(lr), float(beta1), float(beta2), float(eps)
    decoupled_decay = float(decoupled_decay)
    g = _effective_grad(params, grads, sum_sq, max_norm, clip_value, float(weight_decay),
                        float(l2), int(n_l2))
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** int(step))
    v_hat = v / (1.0 - beta2 ** int(step))
    if decoupled_decay != 0.0:
        params -= (lr * decoupled_decay) * params
    params -= lr * m_hat / (np.sqrt(v_hat) + eps)
    _write_shadow(shadow, params)


def _fused_update(params, grads, state, opt_kind, hyper, step, l2, n_l2):
    """Optimizer ``opt_kind`` (fastdl.kernels.OPTIMIZERS) with float64 ``hyper`` packed as:

    0 sgd       [lr, weight_decay]                                   state: none
    1 momentum  [lr, beta, dampening, nesterov (0/1), weight_decay]  state: [velocity]
    2 rmsprop   [lr, beta, eps, weight_decay]                        state: [square_avg]
    3 adam      [lr, beta1, beta2, eps, weight_decay, decoupled]     state: [m, v]

    ``step`` is 1-based (Adam's t). The optimizers' ``fused_spec()`` build these arrays.
    No clipping here (``max_norm = clip_value = inf``): a clipping optimizer has no fused spec.
    """
    off = (NO_SUM_SQ, math.inf, math.inf)
    if opt_kind == 0:
        sgd_update(params, NO_SHADOW, grads, hyper[0], hyper[1], *off, l2, n_l2)
    elif opt_kind == 1:
        momentum_update(params, NO_SHADOW, state[0], grads, hyper[0], hyper[1], hyper[2],
                        hyper[3] != 0.0, hyper[4], *off, l2, n_l2)
    elif opt_kind == 2:
        rmsprop_update(params, NO_SHADOW, state[0], grads, hyper[0], hyper[1], hyper[2], hyper[3],
                       *off, l2, n_l2)
    elif opt_kind == 3:
        adam_update(params, NO_SHADOW, state[0], state[1], grads, hyper[0], hyper[1], hyper[2],
                    hyper[3], step, hyper[4], hyper[5], *off, l2, n_l2)
    else:
        raise ValueError(f"unknown optimizer code {opt_kind}")
