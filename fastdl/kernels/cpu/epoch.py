"""A whole training epoch of a dense-only network in one jitted call (cpu).

Same arguments and results as ``reference/epoch.py`` (costs, params, grads, optimizer state),
but the whole epoch is one serial ``@njit`` loop: per-call Python overhead (microseconds per
kernel) is what limits tiny nets such as 2-5-2-1, whose GEMMs are a few dozen multiply-adds per
example. How it differs from the reference:

* Activations are stored feature-major inside their ``ws`` slots (unit u of layer l is the
  contiguous run ``A_l^T[u, :mb]``), so every inner loop runs over the batch: the tiny GEMMs,
  bias+activation, derivatives, dW/db reductions all vectorize, whatever the layer widths.
* The X-batch slot holds the batch transposed, gathered through ``order`` in one loop (its
  independent loads overlap the cache misses of random rows); targets are read through
  ``order`` in the loss. Nothing is allocated inside the batch loop.
* Sums over the batch (dW, db) are vectorized reductions, so they are added in another order
  than BLAS; values agree with the reference to rounding.
* Inner loops index 1-D row slices with ``range`` counters from 0: Numba's negative-index
  wraparound check on ``ws[off + r]`` kept LLVM from vectorizing and cost 2.5x on 2-5-2-1.

Serial on purpose: the work per batch is far too small to pay for threads.
"""

import numpy as np

from .. import LOSSES, OPTIMIZERS
from ._jit import jit
from .activations import _dg, _g
from .losses import _row_correct
from .optim import _fused_update



@jit(inline="always")
def _slot(layout, li, batch_size):
    """Offset of layer li's slot inside the A (or dA) region of ``ws``."""
    off = 0
    for j in range(li):
        off += batch_size * layout[j, 2]
    return off


@jit
def _bias_act(out, bias, act, alpha, zero, one):
    """out = g(out + bias), one branch-free loop per activation code."""
    n = out.shape[0]
    if act == 0:
        for r in range(n):
            out[r] = out[r] + bias
    elif act == 1:
        for r in range(n):
            out[r] = _g(out[r] + bias, 1, alpha, zero, one)
    elif act == 2:
        for r in range(n):
            out[r] = _g(out[r] + bias, 2, alpha, zero, one)
    elif act == 3:
        for r in range(n):
            out[r] = _g(out[r] + bias, 3, alpha, zero, one)
    else:
        for r in range(n):
            out[r] = _g(out[r] + bias, 4, alpha, zero, one)


@jit
def _act_grad(dz, a, act, alpha, zero, one):
    """dz *= g'(from a) in place, one branch-free loop per activation code."""
    n = dz.shape[0]
    if act == 1:
        for r in range(n):
            dz[r] = _dg(dz[r], a[r], 1, alpha, zero, one)
    elif act == 2:
        for r in range(n):
            dz[r] = _dg(dz[r], a[r], 2, alpha, zero, one)
    elif act == 3:
        for r in range(n):
            dz[r] = _dg(dz[r], a[r], 3, alpha, zero, one)
    elif act == 4:
        for r in range(n):
            dz[r] = _dg(dz[r], a[r], 4, alpha, zero, one)


@jit
def _loss_grad(loss, At, dAt, Y, rows, mb):
    """The fused losses of ``losses.py`` on feature-major A_L^T (k, mb); targets Y[rows[r]].
    Writes dA_L^T and returns the batch cost (float64)."""
    k, n = At.shape
    total = 0.0
    if loss == 0:  # sigmoid + binary cross-entropy
        for u in range(k):
            z_u = At[u]
            d_u = dAt[u]
            for r in range(n):
                z = np.float64(z_u[r])
                y = np.float64(Y[rows[r], u])
                e = np.exp(-abs(z))
                total += max(z, 0.0) - z * y + np.log1p(e)
                sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
                d_u[r] = (sig - y) / mb
        return total / mb
    if loss == 1:  # softmax + cross-entropy, one example (column) at a time
        for r in range(n):
            yr = rows[r]
            mx = At[0, r]
            for u in range(1, k):
                if At[u, r] > mx:
                    mx = At[u, r]
            mx64 = np.float64(mx)
            s = 0.0
            ysum = 0.0
            for u in range(k):
                s += np.exp(np.float64(At[u, r]) - mx64)
                ysum += np.float64(Y[yr, u])
            lse = np.log(s)
            for u in range(k):
                logp = (np.float64(At[u, r]) - mx64) - lse
                y = np.float64(Y[yr, u])
                total -= y * logp
                dAt[u, r] = (np.exp(logp) * ysum - y) / mb
        return total / mb
    if loss == 3:  # exp + half Poisson deviance (losses._poisson_element)
        for u in range(k):
            z_u = At[u]
            d_u = dAt[u]
            for r in range(n):
                z = np.float64(z_u[r])
                y = np.float64(Y[rows[r], u])
                mu = np.exp(z)
                ylogy = y * np.log(y) if y > 0.0 else 0.0
                total += mu - y * z + (ylogy - y)
                d_u[r] = (mu - y) / mb
        return total / mb
    n_el = k * n  # mean squared error
    for u in range(k):
        a_u = At[u]
        d_u = dAt[u]
        for r in range(n):
            diff = np.float64(a_u[r]) - np.float64(Y[rows[r], u])
            total += diff * diff
            d_u[r] = 2.0 * diff / n_el
    return total / n_el


@jit
def _train_epoch(costs, correct, params, grads, state, ws, X, Y, order, batch_size, layout, loss,
                 l2, n_l2, alpha, opt_kind, hyper, step):
    m, n_in = X.shape
    n_layers = layout.shape[0]
    units_total = 0
    for li in range(n_layers):
        units_total += layout[li, 2]
    zero = params.dtype.type(0)
    one = params.dtype.type(1)
    a_base = batch_size * n_in
    d_base = a_base + batch_size * units_total
    n_batches = (m + batch_size - 1) // batch_size
    for bi in range(n_batches):
        start = bi * batch_size
        mb = min(batch_size, m - start)
        rows = order[start:start + mb]

        # X batch, transposed: Xb^T[k, r] = X[rows[r], k]
        Xt = ws[:n_in * mb].reshape((n_in, mb))
        for r in range(mb):
            xr = rows[r]
            for k in range(n_in):
                Xt[k, r] = X[xr, k]

        # forward: A_l^T[u] = g(sum_k W[u, k] A_{l-1}^T[k] + b[u])
        in_off = 0
        for li in range(n_layers):
            w_off, b_off, units, inputs, act = layout[li]
            a = a_base + _slot(layout, li, batch_size)
            for u in range(units):
                out = ws[a + u * mb:a + (u + 1) * mb]
                for r in range(mb):
                    out[r] = zero
                for k in range(inputs):
                    w = params[w_off + u * inputs + k]
                    src = ws[in_off + k * mb:in_off + (k + 1) * mb]
                    for r in range(mb):
                        out[r] += w * src[r]
                _bias_act(out, params[b_off + u] if b_off >= 0 else zero, act, alpha, zero,
                          one)
            in_off = a

        # loss fused with the output activation; its gradient into the last dA slot
        k_out = layout[n_layers - 1, 2]
        last = _slot(layout, n_layers - 1, batch_size)
        At = ws[a_base + last:a_base + last + k_out * mb].reshape((k_out, mb))
        dAt = ws[d_base + last:d_base + last + k_out * mb].reshape((k_out, mb))
        cost = _loss_grad(loss, At, dAt, Y, rows, mb)
        if l2 != 0.0:
            w2 = 0.0
            for i in range(n_l2):
                p = np.float64(params[i])
                w2 += p * p
            cost += l2 / (2.0 * mb) * w2
        costs[bi] = cost
        if correct.shape[0] > 0:       # the batch's examples classified right (feature-major)
            hits = 0.0
            flat = ws[a_base + last:a_base + last + k_out * mb]
            for r in range(mb):
                hits += _row_correct(flat, mb, r, Y[rows[r]], 1, 0, k_out, loss)
            correct[bi] = hits

        # backward: dZ = dA g'(A); dW = dZ^T A_{l-1}; db = sum_rows dZ; dA_{l-1} = dZ W
        for li in range(n_layers - 1, -1, -1):
            w_off, b_off, units, inputs, act = layout[li]
            off = _slot(layout, li, batch_size)
            a = a_base + off
            d = d_base + off
            _act_grad(ws[d:d + units * mb], ws[a:a + units * mb], act, alpha, zero, one)
            if li > 0:
                p_off = _slot(layout, li - 1, batch_size)
                in_off = a_base + p_off
            else:
                in_off = 0
            for u in range(units):
                dz = ws[d + u * mb:d + (u + 1) * mb]
                for k in range(inputs):
                    src = ws[in_off + k * mb:in_off + (k + 1) * mb]
                    s = zero
                    for r in range(mb):
                        s += dz[r] * src[r]
                    grads[w_off + u * inputs + k] = s
                if b_off >= 0:
                    s = zero
                    for r in range(mb):
                        s += dz[r]
                    grads[b_off + u] = s
            if li > 0:
                dp = d_base + p_off
                for k in range(inputs):
                    dx = ws[dp + k * mb:dp + (k + 1) * mb]
                    for r in range(mb):
                        dx[r] = zero
                    for u in range(units):
                        w = params[w_off + u * inputs + k]
                        dz = ws[d + u * mb:d + (u + 1) * mb]
                        for r in range(mb):
                            dx[r] += w * dz[r]

        _fused_update(params, grads, state, opt_kind, hyper, step + bi + 1, l2 / mb, n_l2)


_LOSS_CODES = frozenset(LOSSES.values())


def train_epoch(costs, correct, params, grads, state, ws, X, Y, order, batch_size, layout, loss,
                l2, n_l2, alpha, opt_kind, hyper, step):
    """The reference epoch as one serial jitted loop over feature-major batch buffers (small
    GEMMs vectorized over the batch, no gather call, no allocation); same results."""
    if loss not in _LOSS_CODES:
        raise ValueError(f"unknown loss code {loss}")
    if correct.size and loss == LOSSES["mse"]:
        raise ValueError("correct_predictions: loss code 2 (mse) has no classes; pass a size-0 "
                         "correct buffer")
    if opt_kind not in OPTIMIZERS.values():
        raise ValueError(f"unknown optimizer code {opt_kind}")
    if X.shape[0] == 0:
        return
    _train_epoch(costs, correct.reshape(-1), params, grads, state, ws, X, Y, order,
                 np.int64(batch_size), layout,
                 np.int64(loss), np.float64(l2), np.int64(n_l2), params.dtype.type(alpha),
                 np.int64(opt_kind), hyper, np.int64(step))
