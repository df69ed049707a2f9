"""Optimizer updates over the flat parameter buffer (cpu).

Same math, names and argument order as ``reference/optim.py`` (read the legend there). How these
differ from the reference:

* one pass over memory per step, no temporaries: each element's gradient, state and parameter
  are read once and written once (Adam: 16 bytes read + 12 written per float32 parameter);
* the coupled terms are folded: ``g + (weight_decay + l2) * p`` on the weight prefix and
  ``g + weight_decay * p`` after it, so the loop body has no branch;
* Adam uses ``step_size = lr / (1 - beta1^t)`` and ``sqrt(v) / sqrt(1 - beta2^t)`` (PyTorch's
  arrangement) instead of forming ``m_hat`` and ``v_hat``; AdamW multiplies ``p`` by
  ``1 - lr * decoupled_decay`` (PyTorch's ``p.mul_``), the same value up to rounding;
* scalars are cast to the parameters' dtype before the loop, so float32 stays float32 inside it;
* buffers of at least ``config.PARALLEL_MIN_SIZE`` elements run in parallel: ``prange`` over
  blocks of ``_BLOCK`` contiguous elements, each block the serial loop (vectorised by LLVM).
  Smaller buffers run serially (threads only pay for themselves on large buffers, and a serial
  kernel never competes with BLAS threads; see docs/design.md).
* clipping (``max_norm`` / ``clip_value``, see the reference legend) is inline in the same
  loop: each block picks, once and outside the loop, either the plain loop (clipping off: the
  loop is exactly the one that ran before clipping existed, so it is not slower) or its
  ``_clip`` twin, which forms ``clamp(g * coef, -c, c)`` from the value it just read (the clamp
  written as two compares, so a NaN passes through as in ``np.clip``). ``coef`` is computed
  once per call in float64 from ``sum_sq[0]`` and cast to the parameters' dtype, as the
  reference's ``t(coef)``. No clipped-gradient buffer, one pass;
* compiled with ``error_model="numpy"`` (``_jit``): the Python error model's zero-divisor check
  kept LLVM from vectorising these loops (scalar ``vdivss`` / ``vsqrtss`` instead of packed
  ones, checked with ``inspect_asm``; Adam at 22 instead of ~50 GB/s).

* the bfloat16 weight shadow (``shadow``, mixed precision) is written block by block: right
  after a block of ``_BLOCK`` parameters is updated, its part of the shadow is narrowed from
  the values just written, still in L2 (so the conversion costs the 2-byte stores, not a pass
  over memory; the serial variants walk the same blocks for that reason). The update loops
  themselves are unchanged.

``_fused_update`` is the serial dispatcher the fused-epoch kernel calls (no clipping, no
shadow); its ``hyper`` packing is documented in ``reference/optim.py:_fused_update``.
"""

import math

import numpy as np

import numba
from numba import prange

from ... import config
from ._bf16 import bf16
from ._jit import jit, pjit

#: Elements per parallel block (64 Ki float32 = 256 KiB per stream: long vector runs, and enough
#: blocks for static scheduling to balance two or more threads).
_BLOCK = 1 << 16
#: PyTorch's guard against a zero norm in ``clip_grad_norm_`` (reference ``NORM_EPS``).
_NORM_EPS = 1e-6

# Loops run over whole (sliced) arrays: with ``range(lo, hi)`` indices Numba's negative-index
# wraparound kept LLVM from vectorising (4x slower Adam); slices of C arrays stay C arrays.


@jit(inline="always")
def _split(lo, hi, n_l2):
    """End of the L2 (weight) prefix inside the block [lo, hi)."""
    return min(max(n_l2, lo), hi)


@jit(inline="always")
def _n_blocks(n):
    return (n + _BLOCK - 1) // _BLOCK


def _dynamic(kernel):
    """``kernel`` run with dynamic scheduling of its ``prange`` blocks (chunks of one block go
    to whichever thread is free, so a thread that starts late, e.g. a vCPU woken from idle,
    does not hold the step back). Set around the call, not inside the jitted function: there
    ``numba.set_parallel_chunksize`` makes the kernel uncacheable."""
    def run(*args):
        old = numba.set_parallel_chunksize(1)
        try:
            kernel(*args)
        finally:
            numba.set_parallel_chunksize(old)
    return run


@jit(inline="always")
def _write_shadow(shadow, params, lo, hi):
    """shadow[lo:k] = bf16(params[lo:k]), k = min(hi, len(shadow)): the block just updated."""
    k = min(hi, shadow.shape[0])
    if k > lo:
        s = shadow[lo:k]
        p = params[lo:k]
        for i in range(s.shape[0]):
            s[i] = bf16(p[i])


# ------------------------------------------------------------------------------ clipping ----
@jit(inline="always")
def _clip_setup(sum_sq, max_norm, clip_value):
    """(coef, clip): the float64 norm coefficient min(1, max_norm / (sqrt(sum_sq[0]) + 1e-6))
    (1 when ``max_norm`` is inf, a NaN norm gives NaN) and whether any clipping is on."""
    if math.isinf(max_norm):
        return 1.0, not math.isinf(clip_value)
    coef = max_norm / (math.sqrt(sum_sq[0]) + _NORM_EPS)
    if coef > 1.0:
        coef = 1.0
    return coef, True


@jit(inline="always")
def _clipped(g, coef, c):
    """clamp(g * coef, -c, c); a NaN passes through (both compares are false)."""
    g = g * coef
    if g > c:
        g = c
    elif g < -c:
        g = -c
    return g


# ---------------------------------------------------------------------------------- sgd ----
@jit
def _sgd_loop(params, grads, lr, wd):
    for i in range(params.shape[0]):
        p = params[i]
        params[i] = p - lr * (grads[i] + wd * p)


@jit
def _sgd_clip_loop(params, grads, lr, wd, coef, c):
    for i in range(params.shape[0]):
        p = params[i]
        params[i] = p - lr * (_clipped(grads[i], coef, c) + wd * p)


@jit
def _sgd_block(params, grads, lo, hi, n_l2, lr, weight_decay, l2, clip, coef, clip_value):
    t = params.dtype.type
    lr_, wd, wd_l2 = t(lr), t(weight_decay), t(weight_decay + l2)
    k = _split(lo, hi, n_l2)
    if clip:
        coef_, c = t(coef), t(clip_value)
        _sgd_clip_loop(params[lo:k], grads[lo:k], lr_, wd_l2, coef_, c)
        _sgd_clip_loop(params[k:hi], grads[k:hi], lr_, wd, coef_, c)
    else:
        _sgd_loop(params[lo:k], grads[lo:k], lr_, wd_l2)
        _sgd_loop(params[k:hi], grads[k:hi], lr_, wd)


@jit
def _sgd_serial(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2,
                n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in range(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _sgd_block(params, grads, lo, hi, n_l2, lr, weight_decay, l2, clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


@pjit
def _sgd_parallel(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2,
                  n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in prange(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _sgd_block(params, grads, lo, hi, n_l2, lr, weight_decay, l2, clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


def sgd_update(params, shadow, grads, lr, weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    """p <- p - lr * g (g: clipped gradient + coupled weight decay + L2 on the weight prefix);
    shadow = bf16(p[:len(shadow)])."""
    f = _dynamic(_sgd_parallel) if params.shape[0] >= config.PARALLEL_MIN_SIZE \
        else _sgd_serial
    f(params, shadow, grads, float(lr), float(weight_decay), sum_sq, float(max_norm),
      float(clip_value), float(l2), int(n_l2))


# ----------------------------------------------------------------------------- momentum ----
@jit
def _momentum_loop(params, velocity, grads, lr, beta, c, nesterov, wd):
    for i in range(params.shape[0]):
        p = params[i]
        g = grads[i] + wd * p
        v = beta * velocity[i] + c * g
        velocity[i] = v
        if nesterov:
            params[i] = p - lr * (c * g + beta * v)
        else:
            params[i] = p - lr * v


@jit
def _momentum_clip_loop(params, velocity, grads, lr, beta, c, nesterov, wd, coef, cv):
    for i in range(params.shape[0]):
        p = params[i]
        g = _clipped(grads[i], coef, cv) + wd * p
        v = beta * velocity[i] + c * g
        velocity[i] = v
        if nesterov:
            params[i] = p - lr * (c * g + beta * v)
        else:
            params[i] = p - lr * v


@jit
def _momentum_block(params, velocity, grads, lo, hi, n_l2, lr, beta, dampening, nesterov,
                    weight_decay, l2, clip, coef, clip_value):
    t = params.dtype.type
    lr_, beta_, c = t(lr), t(beta), t(1.0 - dampening)
    wd, wd_l2 = t(weight_decay), t(weight_decay + l2)
    k = _split(lo, hi, n_l2)
    if clip:
        coef_, cv = t(coef), t(clip_value)
        _momentum_clip_loop(params[lo:k], velocity[lo:k], grads[lo:k], lr_, beta_, c, nesterov,
                            wd_l2, coef_, cv)
        _momentum_clip_loop(params[k:hi], velocity[k:hi], grads[k:hi], lr_, beta_, c, nesterov,
                            wd, coef_, cv)
    else:
        _momentum_loop(params[lo:k], velocity[lo:k], grads[lo:k], lr_, beta_, c, nesterov,
                       wd_l2)
        _momentum_loop(params[k:hi], velocity[k:hi], grads[k:hi], lr_, beta_, c, nesterov, wd)


@jit
def _momentum_serial(params, shadow, velocity, grads, lr, beta, dampening, nesterov,
                     weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in range(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _momentum_block(params, velocity, grads, lo, hi, n_l2, lr, beta, dampening, nesterov,
                        weight_decay, l2, clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


@pjit
def _momentum_parallel(params, shadow, velocity, grads, lr, beta, dampening, nesterov,
                       weight_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in prange(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _momentum_block(params, velocity, grads, lo, hi, n_l2, lr, beta, dampening, nesterov,
                        weight_decay, l2, clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


def momentum_update(params, shadow, velocity, grads, lr, beta, dampening, nesterov, weight_decay,
                    sum_sq, max_norm, clip_value, l2, n_l2):
    """v <- beta v + (1 - dampening) g;  p <- p - lr * (v, or (1 - dampening) g + beta v);
    shadow = bf16(p[:len(shadow)])."""
    f = _dynamic(_momentum_parallel) if params.shape[0] >= config.PARALLEL_MIN_SIZE \
        else _momentum_serial
    f(params, shadow, velocity, grads, float(lr), float(beta), float(dampening),
      bool(nesterov), float(weight_decay), sum_sq, float(max_norm), float(clip_value),
      float(l2), int(n_l2))


# ------------------------------------------------------------------------------ rmsprop ----
@jit
def _rmsprop_loop(params, square_avg, grads, lr, beta, c, eps, wd):
    for i in range(params.shape[0]):
        p = params[i]
        g = grads[i] + wd * p
        s = beta * square_avg[i] + c * g * g
        square_avg[i] = s
        params[i] = p - lr * g / (math.sqrt(s) + eps)


@jit
def _rmsprop_clip_loop(params, square_avg, grads, lr, beta, c, eps, wd, coef, cv):
    for i in range(params.shape[0]):
        p = params[i]
        g = _clipped(grads[i], coef, cv) + wd * p
        s = beta * square_avg[i] + c * g * g
        square_avg[i] = s
        params[i] = p - lr * g / (math.sqrt(s) + eps)


@jit
def _rmsprop_block(params, square_avg, grads, lo, hi, n_l2, lr, beta, eps, weight_decay, l2,
                   clip, coef, clip_value):
    t = params.dtype.type
    lr_, beta_, c, eps_ = t(lr), t(beta), t(1.0 - beta), t(eps)
    wd, wd_l2 = t(weight_decay), t(weight_decay + l2)
    k = _split(lo, hi, n_l2)
    if clip:
        coef_, cv = t(coef), t(clip_value)
        _rmsprop_clip_loop(params[lo:k], square_avg[lo:k], grads[lo:k], lr_, beta_, c, eps_,
                           wd_l2, coef_, cv)
        _rmsprop_clip_loop(params[k:hi], square_avg[k:hi], grads[k:hi], lr_, beta_, c, eps_, wd,
                           coef_, cv)
    else:
        _rmsprop_loop(params[lo:k], square_avg[lo:k], grads[lo:k], lr_, beta_, c, eps_, wd_l2)
        _rmsprop_loop(params[k:hi], square_avg[k:hi], grads[k:hi], lr_, beta_, c, eps_, wd)


@jit
def _rmsprop_serial(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
                    max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in range(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _rmsprop_block(params, square_avg, grads, lo, hi, n_l2, lr, beta, eps, weight_decay, l2,
                       clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


@pjit
def _rmsprop_parallel(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
                      max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in prange(_n_blocks(n)):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _rmsprop_block(params, square_avg, grads, lo, hi, n_l2, lr, beta, eps, weight_decay, l2,
                       clip, coef, clip_value)
        _write_shadow(shadow, params, lo, hi)


def rmsprop_update(params, shadow, square_avg, grads, lr, beta, eps, weight_decay, sum_sq,
                   max_norm, clip_value, l2, n_l2):
    """s <- beta s + (1 - beta) g^2;  p <- p - lr g / (sqrt(s) + eps);
    shadow = bf16(p[:len(shadow)])."""
    f = _dynamic(_rmsprop_parallel) if params.shape[0] >= config.PARALLEL_MIN_SIZE \
        else _rmsprop_serial
    f(params, shadow, square_avg, grads, float(lr), float(beta), float(eps),
      float(weight_decay), sum_sq, float(max_norm), float(clip_value), float(l2), int(n_l2))


# --------------------------------------------------------------------------------- adam ----
@jit(inline="always")
def _adam_elem(p, g, mi, vi, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay):
    """One element: (new p, new m, new v) from the effective gradient g."""
    mi = b1 * mi + c1 * g
    vi = b2 * vi + c2 * g * g
    return decay * p - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps), mi, vi


@jit
def _adam_loop(params, shadow, m, v, grads, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps,
               decay, wd):
    """The update over a segment; with a non-empty ``shadow`` (the segment's part) the same
    loop stores bf16 of each new parameter (2 bytes more per element, no second pass)."""
    if shadow.shape[0]:
        for i in range(params.shape[0]):
            p = params[i]
            pn, mi, vi = _adam_elem(p, grads[i] + wd * p, m[i], v[i], b1, c1, b2, c2,
                                    step_size, inv_sqrt_bc2, eps, decay)
            m[i] = mi
            v[i] = vi
            params[i] = pn
            shadow[i] = bf16(pn)
    else:
        for i in range(params.shape[0]):
            p = params[i]
            pn, mi, vi = _adam_elem(p, grads[i] + wd * p, m[i], v[i], b1, c1, b2, c2,
                                    step_size, inv_sqrt_bc2, eps, decay)
            m[i] = mi
            v[i] = vi
            params[i] = pn


@jit
def _adam_clip_loop(params, shadow, m, v, grads, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps,
                    decay, wd, coef, cv):
    if shadow.shape[0]:
        for i in range(params.shape[0]):
            p = params[i]
            pn, mi, vi = _adam_elem(p, _clipped(grads[i], coef, cv) + wd * p, m[i], v[i], b1,
                                    c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay)
            m[i] = mi
            v[i] = vi
            params[i] = pn
            shadow[i] = bf16(pn)
    else:
        for i in range(params.shape[0]):
            p = params[i]
            pn, mi, vi = _adam_elem(p, _clipped(grads[i], coef, cv) + wd * p, m[i], v[i], b1,
                                    c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay)
            m[i] = mi
            v[i] = vi
            params[i] = pn


@jit
def _adam_block(params, shadow, m, v, grads, lo, hi, n_l2, lr, beta1, beta2, eps, step,
                weight_decay, decoupled_decay, l2, clip, coef, clip_value):
    # bias corrections in float64 once per block, then every scalar in the params' dtype
    t = params.dtype.type
    step_size = t(lr / (1.0 - beta1 ** step))
    inv_sqrt_bc2 = t(1.0 / math.sqrt(1.0 - beta2 ** step))
    b1, c1, b2, c2 = t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2)
    eps_, decay = t(eps), t(1.0 - lr * decoupled_decay)
    wd, wd_l2 = t(weight_decay), t(weight_decay + l2)
    coef_, cv = t(coef), t(clip_value)
    # three segments: inside / outside the L2 prefix [0, n_l2) and the shadow prefix
    k = _split(lo, hi, n_l2)
    s = _split(lo, hi, shadow.shape[0])
    bounds = (lo, min(k, s), max(k, s), hi)
    for j in range(3):
        x, y = bounds[j], bounds[j + 1]
        w = wd_l2 if y <= k else wd
        sh = shadow[x:y] if y <= s else shadow[:0]
        if clip:
            _adam_clip_loop(params[x:y], sh, m[x:y], v[x:y], grads[x:y], b1, c1, b2, c2,
                            step_size, inv_sqrt_bc2, eps_, decay, w, coef_, cv)
        else:
            _adam_loop(params[x:y], sh, m[x:y], v[x:y], grads[x:y], b1, c1, b2, c2, step_size,
                       inv_sqrt_bc2, eps_, decay, w)


@jit
def _adam_serial(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                 decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    _adam_block(params, shadow, m, v, grads, 0, params.shape[0], n_l2, lr, beta1, beta2, eps,
                step, weight_decay, decoupled_decay, l2, clip, coef, clip_value)


@pjit
def _adam_parallel(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                   decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    coef, clip = _clip_setup(sum_sq, max_norm, clip_value)
    n = params.shape[0]
    for b in prange(_n_blocks(n)):
        _adam_block(params, shadow, m, v, grads, b * _BLOCK, min((b + 1) * _BLOCK, n), n_l2,
                    lr, beta1, beta2, eps, step, weight_decay, decoupled_decay, l2, clip, coef,
                    clip_value)


def adam_update(params, shadow, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                decoupled_decay, sum_sq, max_norm, clip_value, l2, n_l2):
    """Adam / AdamW with bias correction, eps outside the sqrt of the corrected v (1-based
    step); shadow = bf16(p[:len(shadow)])."""
    f = _dynamic(_adam_parallel) if params.shape[0] >= config.PARALLEL_MIN_SIZE \
        else _adam_serial
    f(params, shadow, m, v, grads, float(lr), float(beta1), float(beta2), float(eps), int(step),
      float(weight_decay), float(decoupled_decay), sum_sq, float(max_norm), float(clip_value),
      float(l2), int(n_l2))


# ------------------------------------------------------------------- fused-epoch dispatch ----
@jit
def _fused_update(params, grads, state, opt_kind, hyper, step, l2, n_l2):
    """Serial optimizer dispatch for fused-epoch kernels (tiny nets), without clipping (a
    clipping optimizer has no fused spec). ``step`` is 1-based; the ``hyper``/``state``
    layouts are those of ``reference/optim.py:_fused_update``."""
    n, inf = params.shape[0], math.inf
    if opt_kind == 0:
        _sgd_block(params, grads, 0, n, n_l2, hyper[0], hyper[1], l2, False, 1.0, inf)
    elif opt_kind == 1:
        _momentum_block(params, state[0], grads, 0, n, n_l2, hyper[0], hyper[1], hyper[2],
                        hyper[3] != 0.0, hyper[4], l2, False, 1.0, inf)
    elif opt_kind == 2:
        _rmsprop_block(params, state[0], grads, 0, n, n_l2, hyper[0], hyper[1], hyper[2],
                       hyper[3], l2, False, 1.0, inf)
    elif opt_kind == 3:
        _adam_block(params, np.empty(0, np.uint16), state[0], state[1], grads, 0, n, n_l2,
                    hyper[0], hyper[1], hyper[2], hyper[3], step, hyper[4], hyper[5], l2, False,
                    1.0, inf)
