"""Optimizer updates over the flat parameter buffer (cuda).

Same math, argument order and evaluation order as ``reference/optim.py`` (read its legend): the
effective gradient ``g + weight_decay p (+ l2 p on the first n_l2 entries)``, then the update.
Differs in being one grid-stride pass over memory per step (parameters, state and gradient are
each read once and written once, no temporaries). Scalars derived from the hyperparameters
(``1 - beta``, Adam's bias corrections ``1 - beta^step``, ``lr * decoupled_decay``) are
computed on the host in float64 and cast to the parameter dtype, as NumPy's scalar promotion
does in the reference.

Clipping (``sum_sq, max_norm, clip_value``; see the reference legend) is inline in the same pass:
with both bounds inf the launcher runs the plain kernel (exactly the one that ran before
clipping existed), else its ``_clip`` twin, where each thread forms the coefficient once from
the float64 ``sum_sq[0]`` written on the device by ``reductions.sum_squares`` just before (one
float64 sqrt and division per thread, nothing per element; no host synchronization), casts it
to the parameter dtype, and applies ``clamp(g * coef, -c, c)`` to each gradient value it reads
(two compares: a NaN passes through). No clipped-gradient buffer, no extra launch.

``_update_fns(dtype)`` gives the per-element device functions (each takes the gradient value,
already clipped where clipping is on); ``opt_update`` applies optimizer ``opt_kind`` to one
element (no clipping), reading its hyperparameters from a device array laid out by
``_derived_hyper`` (used by the fused epoch kernel).
"""

import math

import numpy as np
from numba import cuda

from ._device import blocks, empty_bf16, per_dtype, tpb
from .precision import to_bfloat16

SGD, MOMENTUM, RMSPROP, ADAM = range(4)


@per_dtype
def _update_fns(T):
    @cuda.jit(device=True, inline="always")
    def eff_grad(p, g, weight_decay, l2, i, n_l2):
        if weight_decay != T(0):
            g = g + weight_decay * p
        if l2 != T(0) and i < n_l2:
            g = g + l2 * p
        return g

    @cuda.jit(device=True, inline="always")
    def clipped(g, coef, c):
        g = g * coef
        if g > c:
            g = c
        elif g < -c:
            g = -c
        return g

    @cuda.jit(device=True, inline="always")
    def sgd_one(params, gi, i, lr, weight_decay, l2, n_l2):
        p = params[i]
        g = eff_grad(p, gi, weight_decay, l2, i, n_l2)
        params[i] = p - lr * g

    @cuda.jit(device=True, inline="always")
    def momentum_one(params, velocity, gi, i, lr, beta, one_m_damp, nesterov, weight_decay,
                     l2, n_l2):
        p = params[i]
        g = eff_grad(p, gi, weight_decay, l2, i, n_l2)
        v = velocity[i] * beta + one_m_damp * g
        velocity[i] = v
        d = one_m_damp * g + beta * v if nesterov else v
        params[i] = p - lr * d

    @cuda.jit(device=True, inline="always")
    def rmsprop_one(params, square_avg, gi, i, lr, beta, one_m_beta, eps, weight_decay, l2,
                    n_l2):
        p = params[i]
        g = eff_grad(p, gi, weight_decay, l2, i, n_l2)
        s = square_avg[i] * beta + one_m_beta * g * g
        square_avg[i] = s
        params[i] = p - lr * g / (math.sqrt(s) + eps)

    @cuda.jit(device=True, inline="always")
    def adam_one(params, m, v, gi, i, lr, beta1, one_m_b1, beta2, one_m_b2, eps, bc1, bc2,
                 lr_dd, weight_decay, l2, n_l2):
        p = params[i]
        g = eff_grad(p, gi, weight_decay, l2, i, n_l2)
        mi = m[i] * beta1 + one_m_b1 * g
        vi = v[i] * beta2 + one_m_b2 * g * g
        m[i] = mi
        v[i] = vi
        if lr_dd != T(0):
            p = p - lr_dd * p
        params[i] = p - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)

    @cuda.jit(device=True, inline="always")
    def opt_update(params, grads, state, i, opt_kind, h, bc1, bc2, l2, n_l2):
        """Optimizer ``opt_kind`` on element i (no clipping); ``h`` laid out by
        ``_derived_hyper``."""
        gi = grads[i]
        if opt_kind == 0:
            sgd_one(params, gi, i, h[0], h[1], l2, n_l2)
        elif opt_kind == 1:
            momentum_one(params, state[0], gi, i, h[0], h[1], h[2], h[3] != T(0), h[4], l2,
                         n_l2)
        elif opt_kind == 2:
            rmsprop_one(params, state[0], gi, i, h[0], h[1], h[2], h[3], h[4], l2, n_l2)
        elif opt_kind == 3:
            adam_one(params, state[0], state[1], gi, i, h[0], h[1], h[2], h[3], h[4], h[5],
                     bc1, bc2, h[7], h[6], l2, n_l2)

    @cuda.jit(device=True, inline="always")
    def clip_coef(sum_sq, max_norm):
        """min(1, max_norm / (sqrt(sum_sq[0]) + 1e-6)) from float64, cast to T (1 when
        max_norm is inf; a NaN norm gives NaN)."""
        coef = T(1)
        if not math.isinf(max_norm):
            c64 = max_norm / (math.sqrt(sum_sq[0]) + 1e-6)
            if c64 < 1.0 or c64 != c64:          # clamp to 1, keep a NaN
                coef = T(c64)
        return coef

    return (sgd_one, momentum_one, rmsprop_one, adam_one, opt_update, clipped, clip_coef)


def _derived_hyper(opt_kind, hyper) -> np.ndarray:
    """float64 device-side hyperparameters of the fused-update layout (reference
    ``optim._fused_update``) with the derived scalars precomputed:

    0 sgd      [lr, weight_decay]
    1 momentum [lr, beta, 1 - dampening, nesterov, weight_decay]
    2 rmsprop  [lr, beta, 1 - beta, eps, weight_decay]
    3 adam     [lr, beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay, lr * decoupled]
    """
    h = [float(v) for v in np.asarray(hyper, dtype=np.float64).ravel()]
    if opt_kind == SGD:
        out = [h[0], h[1]]
    elif opt_kind == MOMENTUM:
        out = [h[0], h[1], 1.0 - h[2], 1.0 if h[3] != 0.0 else 0.0, h[4]]
    elif opt_kind == RMSPROP:
        out = [h[0], h[1], 1.0 - h[1], h[2], h[3]]
    elif opt_kind == ADAM:
        out = [h[0], h[1], 1.0 - h[1], h[2], 1.0 - h[2], h[3], h[4], h[0] * h[5]]
    else:
        raise ValueError(f"opt_kind={opt_kind!r} is not a known optimizer code; expected 0-3")
    return np.asarray(out, dtype=np.float64)


def _bias_corrections(opt_kind, hyper, step):
    """Adam's (1 - beta1^step, 1 - beta2^step) in float64 (1, 1 for the others)."""
    if opt_kind != ADAM:
        return 1.0, 1.0
    h = np.asarray(hyper, dtype=np.float64).ravel()
    return 1.0 - float(h[1]) ** int(step), 1.0 - float(h[2]) ** int(step)


@per_dtype
def _sgd_update_kernel(T):
    sgd_one = _update_fns.for_type(T)[0]

    @cuda.jit
    def kernel(params, grads, lr, weight_decay, l2, n_l2):
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            sgd_one(params, grads[i], i, lr, weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _sgd_clip_update_kernel(T):
    fns = _update_fns.for_type(T)
    sgd_one, clipped, clip_coef = fns[0], fns[5], fns[6]

    @cuda.jit
    def kernel(params, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
        coef, c = clip_coef(sum_sq, max_norm), clip_value
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            sgd_one(params, clipped(grads[i], coef, c), i, lr, weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _momentum_update_kernel(T):
    momentum_one = _update_fns.for_type(T)[1]

    @cuda.jit
    def kernel(params, velocity, grads, lr, beta, one_m_damp, nesterov, weight_decay, l2, n_l2):
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            momentum_one(params, velocity, grads[i], i, lr, beta, one_m_damp, nesterov,
                         weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _momentum_clip_update_kernel(T):
    fns = _update_fns.for_type(T)
    momentum_one, clipped, clip_coef = fns[1], fns[5], fns[6]

    @cuda.jit
    def kernel(params, velocity, grads, lr, beta, one_m_damp, nesterov, weight_decay, sum_sq,
               max_norm, clip_value, l2, n_l2):
        coef, c = clip_coef(sum_sq, max_norm), clip_value
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            momentum_one(params, velocity, clipped(grads[i], coef, c), i, lr, beta, one_m_damp,
                         nesterov, weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _rmsprop_update_kernel(T):
    rmsprop_one = _update_fns.for_type(T)[2]

    @cuda.jit
    def kernel(params, square_avg, grads, lr, beta, one_m_beta, eps, weight_decay, l2, n_l2):
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            rmsprop_one(params, square_avg, grads[i], i, lr, beta, one_m_beta, eps, weight_decay,
                        l2, n_l2)
    return kernel


@per_dtype
def _rmsprop_clip_update_kernel(T):
    fns = _update_fns.for_type(T)
    rmsprop_one, clipped, clip_coef = fns[2], fns[5], fns[6]

    @cuda.jit
    def kernel(params, square_avg, grads, lr, beta, one_m_beta, eps, weight_decay, sum_sq,
               max_norm, clip_value, l2, n_l2):
        coef, c = clip_coef(sum_sq, max_norm), clip_value
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            rmsprop_one(params, square_avg, clipped(grads[i], coef, c), i, lr, beta, one_m_beta,
                        eps, weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _adam_update_kernel(T):
    adam_one = _update_fns.for_type(T)[3]

    @cuda.jit
    def kernel(params, m, v, grads, lr, beta1, one_m_b1, beta2, one_m_b2, eps, bc1, bc2, lr_dd,
               weight_decay, l2, n_l2):
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            adam_one(params, m, v, grads[i], i, lr, beta1, one_m_b1, beta2, one_m_b2, eps, bc1,
                     bc2, lr_dd, weight_decay, l2, n_l2)
    return kernel


@per_dtype
def _adam_clip_update_kernel(T):
    fns = _update_fns.for_type(T)
    adam_one, clipped, clip_coef = fns[3], fns[5], fns[6]

    @cuda.jit
    def kernel(params, m, v, grads, lr, beta1, one_m_b1, beta2, one_m_b2, eps, bc1, bc2, lr_dd,
               weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
        coef, c = clip_coef(sum_sq, max_norm), clip_value
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            adam_one(params, m, v, clipped(grads[i], coef, c), i, lr, beta1, one_m_b1, beta2,
                     one_m_b2, eps, bc1, bc2, lr_dd, weight_decay, l2, n_l2)
    return kernel


def _grid(params):
    return blocks(params.shape[0]), tpb()


def _clipping(max_norm, clip_value):
    """True unless both bounds are inf (then the plain kernel runs and ``sum_sq`` is unused)."""
    return not (math.isinf(max_norm) and math.isinf(clip_value))


def _write_shadow(shadow, params):
    """shadow = bf16(params[:len(shadow)]), a conversion kernel after the update (the cpu
    backend writes it inside the update loop; on the GPU mixed precision is not enabled yet)."""
    if shadow.size:
        to_bfloat16(shadow, params[:shadow.shape[0]])


def sgd_update(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    """p <- p - lr * g (one pass; g: clipped gradient + coupled terms); shadow after it."""
    t = params.dtype.type
    max_norm, clip_value = float(max_norm), float(clip_value)
    args = (params, grads, t(lr), t(weight_decay))
    if _clipping(max_norm, clip_value):
        _sgd_clip_update_kernel(params.dtype)[_grid(params)](
            *args, sum_sq, np.float64(max_norm), t(clip_value), t(l2), np.int64(n_l2))
    else:
        _sgd_update_kernel(params.dtype)[_grid(params)](*args, t(l2), np.int64(n_l2))
    _write_shadow(shadow, params)


def momentum_update(params, shadow, velocity, grads, lr, beta, dampening, nesterov, weight_decay,
                    sum_sq, max_norm, clip_value, l2, n_l2):
    """v <- beta v + (1 - dampening) g; p <- p - lr * (Nesterov ? (1-d) g + beta v : v)."""
    t = params.dtype.type
    max_norm, clip_value = float(max_norm), float(clip_value)
    args = (params, velocity, grads, t(lr), t(beta), t(1.0 - float(dampening)), bool(nesterov),
            t(weight_decay))
    if _clipping(max_norm, clip_value):
        _momentum_clip_update_kernel(params.dtype)[_grid(params)](
            *args, sum_sq, np.float64(max_norm), t(clip_value), t(l2), np.int64(n_l2))
    else:
        _momentum_update_kernel(params.dtype)[_grid(params)](*args, t(l2), np.int64(n_l2))
    _write_shadow(shadow, params)


def rmsprop_update(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
                   max_norm, clip_value, l2, n_l2):
    """s <- beta s + (1 - beta) g^2; p <- p - lr g / (sqrt(s) + eps)."""
    t = params.dtype.type
    max_norm, clip_value = float(max_norm), float(clip_value)
    args = (params, square_avg, grads, t(lr), t(beta), t(1.0 - float(beta)), t(eps),
            t(weight_decay))
    if _clipping(max_norm, clip_value):
        _rmsprop_clip_update_kernel(params.dtype)[_grid(params)](
            *args, sum_sq, np.float64(max_norm), t(clip_value), t(l2), np.int64(n_l2))
    else:
        _rmsprop_update_kernel(params.dtype)[_grid(params)](*args, t(l2), np.int64(n_l2))
    _write_shadow(shadow, params)


def adam_update(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    """Adam / AdamW with bias correction (step is 1-based), one pass."""
    t = params.dtype.type
    max_norm, clip_value = float(max_norm), float(clip_value)
    bc1, bc2 = _bias_corrections(ADAM, [lr, beta1, beta2], step)
    args = (params, m, v, grads, t(lr), t(beta1), t(1.0 - float(beta1)), t(beta2),
            t(1.0 - float(beta2)), t(eps), t(bc1), t(bc2), t(float(lr) * float(decoupled_decay)),
            t(weight_decay))
    if _clipping(max_norm, clip_value):
        _adam_clip_update_kernel(params.dtype)[_grid(params)](
            *args, sum_sq, np.float64(max_norm), t(clip_value), t(l2), np.int64(n_l2))
    else:
        _adam_update_kernel(params.dtype)[_grid(params)](*args, t(l2), np.int64(n_l2))
    _write_shadow(shadow, params)


def _fused_update(params, grads, state_rows, opt_kind, hyper, step, l2, n_l2):
    """Host dispatch of optimizer ``opt_kind`` (reference ``optim._fused_update``), without
    clipping (the plain kernels; ``sum_sq`` is not used, so None is passed);
    ``state_rows`` is a sequence of 1-D device arrays (the rows of ``state``)."""
    h = np.asarray(hyper, dtype=np.float64).ravel()
    off = (None, math.inf, math.inf)
    no = empty_bf16(1)          # no bfloat16 shadow: the epoch computes in the params' dtype
    if opt_kind == SGD:
        sgd_update(params, no, grads, h[0], h[1], *off, l2, n_l2)
    elif opt_kind == MOMENTUM:
        momentum_update(params, no, state_rows[0], grads, h[0], h[1], h[2], h[3] != 0.0, h[4],
                        *off, l2, n_l2)
    elif opt_kind == RMSPROP:
        rmsprop_update(params, no, state_rows[0], grads, h[0], h[1], h[2], h[3], *off, l2, n_l2)
    elif opt_kind == ADAM:
        adam_update(params, no, state_rows[0], state_rows[1], grads, h[0], h[1], h[2], h[3],
                    step, h[4], h[5], *off, l2, n_l2)
    else:
        raise ValueError(f"opt_kind={opt_kind!r} is not a known optimizer code; expected 0-3")
