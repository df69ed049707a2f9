"""A whole training epoch of a dense-only network in one jitted call (cpu).

Same arguments, workspace layout and results as ``reference/epoch.py``, but the whole epoch is
one serial ``@njit`` loop: per-call Python overhead (about 1-5 us a kernel) is what limits tiny
nets such as 2-5-2-1, whose GEMMs are a few dozen multiply-adds. Differences from the reference:

* the small GEMMs are hand-written loops (BLAS call overhead dwarfs them), each product summed
  in the layer's dtype before the bias is added, as BLAS then ``A += b`` does;
* rows of ``X`` and ``Y`` are read through ``order`` directly: nothing is gathered (the X-batch
  slot of ``ws`` is left untouched), nothing is allocated inside the batch loop;
* bias+activation and activation derivative use the row helpers of ``activations`` that take
  the code at run time (layers are a few units wide: nothing to vectorize, less to compile); the
  losses are the row functions of ``losses``, the update is ``optim._fused_update``.

Serial on purpose: the work per batch is far too small to pay for threads.
"""

import numpy as np

from .. import LOSSES, OPTIMIZERS
from ._jit import jit
from .activations import _bwd_rows, _fwd_rows
from .losses import _loss_rows
from .optim import _fused_update


@jit(inline="always")
def _act_offset(layout, li, batch_size):
    """Offset of layer li's slot inside the A (or dA) region of ``ws``."""
    off = 0
    for j in range(li):
        off += batch_size * layout[j, 2]
    return off


@jit
def _train_epoch(costs, params, grads, state, ws, X, Y, order, batch_size, layout, loss, l2,
                 n_l2, alpha, opt_kind, hyper, step):
    m = X.shape[0]
    n_in = X.shape[1]
    n_layers = layout.shape[0]
    units_total = 0
    for li in range(n_layers):
        units_total += layout[li, 2]
    zero = params.dtype.type(0)
    a_base = batch_size * n_in
    d_base = a_base + batch_size * units_total
    n_batches = (m + batch_size - 1) // batch_size
    for bi in range(n_batches):
        start = bi * batch_size
        mb = min(batch_size, m - start)

        # forward: A_l = g(A_{l-1} W^T + b); layer 0 reads X through the order
        off = 0
        prev = 0
        for li in range(n_layers):
            w_off = layout[li, 0]
            b_off = layout[li, 1]
            units = layout[li, 2]
            inputs = layout[li, 3]
            A = ws[a_base + off:a_base + off + mb * units].reshape((mb, units))
            if li == 0:
                for r in range(mb):
                    xr = order[start + r]
                    for u in range(units):
                        w = w_off + u * inputs
                        s = zero
                        for k in range(inputs):
                            s += X[xr, k] * params[w + k]
                        A[r, u] = s
            else:
                P = ws[a_base + prev:a_base + prev + mb * inputs].reshape((mb, inputs))
                for r in range(mb):
                    for u in range(units):
                        w = w_off + u * inputs
                        s = zero
                        for k in range(inputs):
                            s += P[r, k] * params[w + k]
                        A[r, u] = s
            b = params[b_off:b_off + units] if b_off >= 0 else params[:0]
            _fwd_rows(A, A, b, layout[li, 4], alpha, 0, mb)
            prev = off
            off += batch_size * units

        # loss fused with the output activation, and its gradient into the last dA slot
        units = layout[n_layers - 1, 2]
        AL = ws[a_base + prev:a_base + prev + mb * units].reshape((mb, units))
        dAL = ws[d_base + prev:d_base + prev + mb * units].reshape((mb, units))
        n_el = mb * units
        total = 0.0
        for r in range(mb):
            total += _loss_rows(loss, dAL, AL, Y, r, order[start + r], mb, n_el)
        cost = total / (n_el if loss == 2 else mb)
        if l2 != 0.0:
            w2 = 0.0
            for i in range(n_l2):
                p = np.float64(params[i])
                w2 += p * p
            cost += l2 / (2.0 * mb) * w2
        costs[bi] = cost

        # backward: dZ = dA g'(A); dW = dZ^T A_{l-1}; db = sum_rows dZ; dA_{l-1} = dZ W
        for li in range(n_layers - 1, -1, -1):
            w_off = layout[li, 0]
            b_off = layout[li, 1]
            units = layout[li, 2]
            inputs = layout[li, 3]
            off = _act_offset(layout, li, batch_size)
            A = ws[a_base + off:a_base + off + mb * units].reshape((mb, units))
            dZ = ws[d_base + off:d_base + off + mb * units].reshape((mb, units))
            _bwd_rows(dZ, dZ, A, layout[li, 4], alpha, 0, mb)
            for i in range(w_off, w_off + units * inputs):
                grads[i] = zero
            if li == 0:
                for r in range(mb):
                    xr = order[start + r]
                    for u in range(units):
                        dz = dZ[r, u]
                        w = w_off + u * inputs
                        for k in range(inputs):
                            grads[w + k] += dz * X[xr, k]
            else:
                poff = _act_offset(layout, li - 1, batch_size)
                P = ws[a_base + poff:a_base + poff + mb * inputs].reshape((mb, inputs))
                for r in range(mb):
                    for u in range(units):
                        dz = dZ[r, u]
                        w = w_off + u * inputs
                        for k in range(inputs):
                            grads[w + k] += dz * P[r, k]
                dP = ws[d_base + poff:d_base + poff + mb * inputs].reshape((mb, inputs))
                for r in range(mb):
                    for k in range(inputs):
                        dP[r, k] = zero
                    for u in range(units):
                        dz = dZ[r, u]
                        w = w_off + u * inputs
                        for k in range(inputs):
                            dP[r, k] += dz * params[w + k]
            if b_off >= 0:
                for u in range(units):
                    grads[b_off + u] = zero
                for r in range(mb):
                    for u in range(units):
                        grads[b_off + u] += dZ[r, u]

        _fused_update(params, grads, state, opt_kind, hyper, step + bi + 1, l2 / mb, n_l2)


_LOSS_CODES = frozenset(LOSSES.values())


def train_epoch(costs, params, grads, state, ws, X, Y, order, batch_size, layout, loss, l2,
                n_l2, alpha, opt_kind, hyper, step):
    """The reference epoch as one serial jitted loop (hand-written small GEMMs, rows read
    through ``order``, no gather, no allocation); same results, same buffers updated."""
    if loss not in _LOSS_CODES:
        raise ValueError(f"unknown loss code {loss}")
    if opt_kind not in OPTIMIZERS.values():
        raise ValueError(f"unknown optimizer code {opt_kind}")
    if X.shape[0] == 0:
        return
    _train_epoch(costs, params, grads, state, ws, X, Y, order, np.int64(batch_size), layout,
                 np.int64(loss), np.float64(l2), np.int64(n_l2), params.dtype.type(alpha),
                 np.int64(opt_kind), hyper, np.int64(step))
