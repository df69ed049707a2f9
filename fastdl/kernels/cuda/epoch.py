"""A whole training epoch of a dense-only network in one call (cuda).

Same arguments, workspace layout and order of operations as ``reference/epoch.py`` (read its
legend). Two implementations, chosen per call:

``_train_epoch_launches`` (any net): the step-by-step path on the device: per batch one gather,
    per layer a GEMM + fused bias/activation, the fused loss (targets read through ``order``, no
    Y gather; the L2 term's sum of squares combined into ``costs[bi]`` by the loss's second
    stage), per layer the fused dZ/db kernel + two GEMMs, and one optimizer kernel. Nothing
    synchronizes the host; ``order`` stays on the device.

``_train_epoch_kernel`` (tiny nets: every layer has at most ``config.FUSED_EPOCH_MAX_WEIGHTS``
    weights): the WHOLE epoch in ONE launch of ONE thread block. Mini-batch SGD is sequential
    (batch b+1 needs the parameters batch b produced), and a tiny net's batch has only a few
    hundred multiply-adds per layer, so the step-by-step path is pure launch overhead (~20
    launches of ~5-20 us of host time each per batch, for microseconds of GPU work; PyTorch is in
    the same position). One block keeps every phase on one SM, separated by ``syncthreads``
    (block-wide barriers also order global-memory writes inside the block), so a batch costs a
    few microseconds. Threads split each phase's independent work: forward over (row, unit),
    the loss over rows/elements (tree-reduced in shared memory), dW over weights (each thread
    sums its weight's column over the batch: deterministic, no atomics), dX over (row, input),
    the optimizer over parameters. It does not pay for wide layers: one SM's arithmetic then
    loses to cuBLAS on the whole GPU, hence the size test.

Per-batch scalars (loss scale, ``l2/mb``, ``l2/(2 mb)``, Adam's bias corrections) are computed
on the host in float64 once per epoch and uploaded in the parameter dtype, so the kernels stay
free of float64 arithmetic.
"""

import math

import numpy as np
from numba import cuda

from ... import config
from ._device import SHARED_SIZE, as_device, as_host, block_sum, blocks, empty_bf16, \
    per_dtype, tpb
from .activations import _act_fns
from .batching import _gather_rows_kernel
from .dense import dense_backward, dense_forward
from .losses import (MSE, POISSON, SIGMOID_BCE, SOFTMAX_CE, _argmax_row, _correct_into,
                     _loss_into, _poisson_cost)
from .optim import _bias_corrections, _derived_hyper, _fused_update, _update_fns
from .reductions import _sum_squares_partials

_LOSS_KINDS = (SIGMOID_BCE, SOFTMAX_CE, MSE, POISSON)  # fastdl.kernels.LOSSES codes 0..3


def _per_batch_scalars(m, batch_size, k_out, loss, l2, n_l2, opt_kind, hyper, step):
    """(n_batches, 5) float64: loss scale, l2/mb, l2/(2 mb), bias corrections 1 and 2."""
    n_batches = (m + batch_size - 1) // batch_size
    out = np.zeros((n_batches, 5), dtype=np.float64)
    for bi in range(n_batches):
        mb = min(batch_size, m - bi * batch_size)
        out[bi, 0] = 1.0 / (mb * k_out) if loss == 2 else 1.0 / mb
        if l2 != 0.0 and n_l2 > 0:
            out[bi, 1] = l2 / mb
            out[bi, 2] = l2 / (2.0 * mb)
        out[bi, 3], out[bi, 4] = _bias_corrections(opt_kind, hyper, step + bi + 1)
    return out


@per_dtype
def _train_epoch_kernel(T):
    act, act_grad = _act_fns.for_type(T)
    opt_update = _update_fns.for_type(T)[4]

    @cuda.jit
    def kernel(costs, correct, params, grads, state, ws, X, Y, order, batch_size, layout, loss,
               alpha, opt_kind, h, per_batch, n_l2):
        """The whole epoch, one block (see the module docstring); ws is flat."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        m = X.shape[0]
        n_in = X.shape[1]
        k_out = Y.shape[1]
        n_layers = layout.shape[0]
        units_total = 0
        for li in range(n_layers):
            units_total += layout[li, 2]
        a_base = batch_size * n_in                  # A_1 starts here
        d_base = a_base + batch_size * units_total  # dA_1 starts here
        for bi in range(per_batch.shape[0]):
            start = bi * batch_size
            mb = min(batch_size, m - start)
            scale = per_batch[bi, 0]
            # gather the batch's rows of X
            for e in range(tid, mb * n_in, nt):
                r = e // n_in
                ws[e] = X[order[start + r], e - r * n_in]
            cuda.syncthreads()
            # forward: A_l = g(A_{l-1} W^T + b)
            in_off = 0
            a_off = a_base
            for li in range(n_layers):
                w_off = layout[li, 0]
                b_off = layout[li, 1]
                units = layout[li, 2]
                inputs = layout[li, 3]
                code = layout[li, 4]
                for e in range(tid, mb * units, nt):
                    r = e // units
                    u = e - r * units
                    z = T(0)
                    xo = in_off + r * inputs
                    wo = w_off + u * inputs
                    for kk in range(inputs):
                        z += ws[xo + kk] * params[wo + kk]
                    if b_off >= 0:
                        z += params[b_off + u]
                    ws[a_off + e] = act(z, code, alpha)
                cuda.syncthreads()
                in_off = a_off
                a_off += batch_size * units
            # loss (fused with the output activation) and dA_L
            out_off = in_off
            dout_off = d_base + (out_off - a_base)
            acc = T(0)
            if loss == 1:  # softmax cross-entropy, one thread per row
                for r in range(tid, mb, nt):
                    yr = order[start + r]
                    zo = out_off + r * k_out
                    zmax = ws[zo]
                    for c in range(1, k_out):
                        zmax = max(zmax, ws[zo + c])
                    s = T(0)
                    for c in range(k_out):
                        s += math.exp(ws[zo + c] - zmax)
                    log_s = math.log(s)
                    ysum = T(0)
                    for c in range(k_out):
                        y = Y[yr, c]
                        ysum += y
                        acc -= y * ((ws[zo + c] - zmax) - log_s)
                    for c in range(k_out):
                        p = math.exp((ws[zo + c] - zmax) - log_s)
                        ws[dout_off + r * k_out + c] = (p * ysum - Y[yr, c]) * scale
            else:  # one thread per element
                for e in range(tid, mb * k_out, nt):
                    r = e // k_out
                    y = Y[order[start + r], e - r * k_out]
                    z = ws[out_off + e]
                    if loss == 0:  # sigmoid binary cross-entropy
                        ez = math.exp(-abs(z))
                        acc += (max(z, T(0)) - z * y) + math.log1p(ez)
                        sig = T(1) / (T(1) + ez) if z >= T(0) else ez / (T(1) + ez)
                        ws[dout_off + e] = (sig - y) * scale
                    elif loss == 3:  # exp + half Poisson deviance
                        mu = math.exp(z)
                        acc += _poisson_cost(z, y, mu, T(0))
                        ws[dout_off + e] = (mu - y) * scale
                    else:  # mean squared error
                        diff = z - y
                        acc += diff * diff
                        ws[dout_off + e] = T(2) * diff * scale
            cost = block_sum(sh, acc) * scale
            l2_half = per_batch[bi, 2]
            if l2_half != T(0):
                a2 = T(0)
                for i in range(tid, n_l2, nt):
                    a2 += params[i] * params[i]
                cost += l2_half * block_sum(sh, a2)
            if tid == 0:
                costs[bi] = cost
            if correct.shape[0] > 0:       # examples classified right (losses.py's rule)
                hits = T(0)
                for r in range(tid, mb, nt):
                    yr = order[start + r]
                    zo = out_off + r * k_out
                    if loss == 1:
                        zb = 0
                        for c in range(1, k_out):
                            a = ws[zo + c]
                            b = ws[zo + zb]
                            if b == b and (a > b or a != a):
                                zb = c
                        if zb == _argmax_row(Y, yr, k_out):
                            hits += T(1)
                    else:
                        row = 0
                        for c in range(k_out):
                            if (ws[zo + c] >= T(0)) == (Y[yr, c] >= T(0.5)):
                                row += 1
                        hits += T(row) / T(k_out)
                total = block_sum(sh, hits)
                if tid == 0:
                    correct[bi] = total
            cuda.syncthreads()
            # backward, last layer first
            for li in range(n_layers - 1, -1, -1):
                w_off = layout[li, 0]
                b_off = layout[li, 1]
                units = layout[li, 2]
                inputs = layout[li, 3]
                code = layout[li, 4]
                a_off = a_base
                for j in range(li):
                    a_off += batch_size * layout[j, 2]
                in_off = a_off - batch_size * inputs if li > 0 else 0
                d_off = d_base + (a_off - a_base)
                for e in range(tid, mb * units, nt):  # dZ = dA * g'(A), in place
                    ws[d_off + e] = act_grad(ws[d_off + e], ws[a_off + e], code, alpha)
                cuda.syncthreads()
                for e in range(tid, units * inputs, nt):  # dW = dZ^T X_in
                    u = e // inputs
                    kk = e - u * inputs
                    s = T(0)
                    for r in range(mb):
                        s += ws[d_off + r * units + u] * ws[in_off + r * inputs + kk]
                    grads[w_off + e] = s
                if b_off >= 0:
                    for u in range(tid, units, nt):  # db = column sums of dZ
                        s = T(0)
                        for r in range(mb):
                            s += ws[d_off + r * units + u]
                        grads[b_off + u] = s
                if li > 0:
                    d_in = d_base + (in_off - a_base)
                    for e in range(tid, mb * inputs, nt):  # dX = dZ W
                        r = e // inputs
                        kk = e - r * inputs
                        s = T(0)
                        for u in range(units):
                            s += ws[d_off + r * units + u] * params[w_off + u * inputs + kk]
                        ws[d_in + e] = s
                cuda.syncthreads()
            # optimizer step over every parameter
            for i in range(tid, params.shape[0], nt):
                opt_update(params, grads, state, i, opt_kind, h, per_batch[bi, 3],
                           per_batch[bi, 4], per_batch[bi, 1], n_l2)
            cuda.syncthreads()
    return kernel


def _use_fused(layout_h) -> bool:
    weights = layout_h[:, 2] * layout_h[:, 3]
    return bool(weights.size) and int(weights.max()) <= config.FUSED_EPOCH_MAX_WEIGHTS


def _train_epoch_fused(costs, correct, params, grads, state, ws, X, Y, order, batch_size,
                       layout_h, loss, l2, n_l2, alpha, opt_kind, hyper_h, step):
    dt = params.dtype
    m = X.shape[0]
    per_batch = _per_batch_scalars(m, batch_size, Y.shape[1], loss, l2, n_l2, opt_kind,
                                   hyper_h, step)
    h = cuda.to_device(_derived_hyper(opt_kind, hyper_h).astype(dt))
    pb = cuda.to_device(per_batch.astype(dt))
    lay = cuda.to_device(np.ascontiguousarray(layout_h, dtype=np.int64))
    _train_epoch_kernel(dt)[1, tpb()](costs, correct, params, grads, state, ws, X, Y, order,
                                       np.int64(batch_size), lay, np.int64(loss), dt.type(alpha),
                                       np.int64(opt_kind), h, pb, np.int64(n_l2))


def _train_epoch_launches(costs, correct, params, grads, state, ws, X, Y, order, batch_size,
                          layout_h, loss, l2, n_l2, alpha, opt_kind, hyper_h, step):
    m, n_in = X.shape
    n_layers = layout_h.shape[0]
    units_total = int(layout_h[:, 2].sum())
    n_batches = (m + batch_size - 1) // batch_size
    kind = _LOSS_KINDS[loss]
    state_rows = [state[i] for i in range(state.shape[0])]
    layers = []
    for li in range(n_layers):
        w_off, b_off, units, inputs, act = (int(v) for v in layout_h[li])
        size = units * inputs
        layers.append((params[w_off:w_off + size].reshape(units, inputs),
                       params[b_off:b_off + units] if b_off >= 0 else params[:0],
                       grads[w_off:w_off + size].reshape(units, inputs),
                       grads[b_off:b_off + units] if b_off >= 0 else grads[:0], act))

    def views(mb):
        Xb = ws[:mb * n_in].reshape(mb, n_in)
        acts, douts = [], []
        a_off = batch_size * n_in
        d_off = a_off + batch_size * units_total
        for li in range(n_layers):
            units = int(layout_h[li, 2])
            acts.append(ws[a_off:a_off + mb * units].reshape(mb, units))
            douts.append(ws[d_off:d_off + mb * units].reshape(mb, units))
            a_off += batch_size * units
            d_off += batch_size * units
        return Xb, acts, douts

    full = views(batch_size) if m >= batch_size else None
    last_mb = m - (n_batches - 1) * batch_size
    last = full if last_mb == batch_size else views(last_mb)
    no_dx = ws[:0]
    no_w = ws[:0]
    no16 = empty_bf16()          # no bfloat16 copies: the epoch computes in the params' dtype
    for bi in range(n_batches):
        start = bi * batch_size
        mb = min(batch_size, m - start)
        Xb, acts, douts = full if mb == batch_size else last
        _gather_rows_kernel[blocks(mb * n_in), tpb()](Xb, X, order, start, mb)
        inp = Xb
        for li, (W, b, _, _, act) in enumerate(layers):
            dense_forward(acts[li], no16, inp, W, b, act, alpha)
            inp = acts[li]
        extra = None
        if l2 != 0.0 and n_l2 > 0:
            p2, n2 = _sum_squares_partials(params, n_l2)
            extra = (p2, n2, l2 / (2.0 * mb))
        _loss_into(kind, costs, bi, douts[-1], acts[-1], Y, order, start, extra)
        if correct.shape[0] > 0:
            _correct_into(correct, bi, acts[-1], Y, no_w, loss, order, start)
        for li in range(n_layers - 1, -1, -1):
            W, _, dW, db, act = layers[li]
            dense_backward(douts[li - 1] if li > 0 else no_dx, dW, db, no16, douts[li],
                           acts[li], acts[li - 1] if li > 0 else Xb, W, act, alpha)
        _fused_update(params, grads, state_rows, opt_kind, hyper_h, step + bi + 1, l2 / mb, n_l2)


def train_epoch(costs, correct, params, grads, state, ws, X, Y, order, batch_size, layout, loss,
                l2, n_l2, alpha, opt_kind, hyper, step):
    """One epoch on the device; the fused one-block kernel for tiny nets, else per-batch
    launches. Every array should already be on the device (nothing then synchronizes the
    host); a host array is accepted but copied in, and for ``costs, correct, params, grads,
    state`` copied back at the end (a sync). ``layout`` and ``hyper`` are small and read on the
    host."""
    layout_h = np.asarray(as_host(layout), dtype=np.int64).reshape(-1, 5)
    hyper_h = np.asarray(as_host(hyper), dtype=np.float64).ravel()
    batch_size, loss, opt_kind = int(batch_size), int(loss), int(opt_kind)
    l2, n_l2, alpha, step = float(l2), int(n_l2), float(alpha), int(step)
    m = X.shape[0]
    if m == 0 or layout_h.shape[0] == 0:
        return
    order_d = as_device(order, np.int64)
    X_d, Y_d, ws_d = as_device(X), as_device(Y), as_device(ws)
    # host buffers are accepted (copied in, and the outputs copied back), but cost transfers
    if correct.shape[0] and loss == 2:
        raise ValueError("correct_predictions: loss code 2 (mse) has no classes; pass a size-0 "
                         "correct buffer")
    outputs = [(a, as_device(a)) for a in (costs, correct, params, grads, state)]
    costs_d, correct_d, params_d, grads_d, state_d = (d for _, d in outputs)
    run = _train_epoch_fused if _use_fused(layout_h) else _train_epoch_launches
    run(costs_d, correct_d, params_d, grads_d, state_d, ws_d, X_d, Y_d, order_d, batch_size,
        layout_h, loss, l2, n_l2, alpha, opt_kind, hyper_h, step)
    for host, d in outputs:
        if d is not host:
            d.copy_to_host(host)
