"""Where one training step of the 784-256-128-10 net goes (fastdl cpu vs PyTorch), per phase.

    python benchmarks/profile_step.py [--batch 64] [--threads 2] [--reps 300]

fastdl's step is replayed phase by phase with the kernels ``fit`` uses (gather, per-layer GEMM
and fused jitted pass, loss, per-layer backward pass and GEMMs, SGD update), each phase timed
over ``--reps`` steps (median per call), then compared with

* the whole step as ``fit`` runs it (``Sequential._step_costs`` + ``optimizer.step``) and
  a whole epoch of ``fit``: the difference is Python overhead of wrappers and the loop;
* PyTorch's forward / backward / ``SGD.step`` / batch indexing on the same shapes.

Also prints the same step with BLAS on 1 thread and the jitted passes serial, to show thread
contention between OpenBLAS and Numba's OpenMP pool (docs/design.md, "Measured facts").
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _peers as P  # noqa: E402  (before fastdl: records the user's OMP_WAIT_POLICY)
import fastdl as fd  # noqa: E402

#: an empty bfloat16 weight shadow: the update kernels compute without mixed precision here
#: (tests/test_precision.py covers it)
NO_SHADOW = np.zeros(0, np.uint16)


def med_us(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(ts)


def phases(model, X, Y, bs, reps):
    """Median microseconds of each phase of one step (fastdl cpu kernels, as fit calls them)."""
    k = model._bk.k
    ws = model._workspace(bs)
    rng = np.random.default_rng(0)
    idx = rng.permutation(X.shape[0])[:bs].astype(np.int64)
    k.gather_rows(ws.Xb, X, idx)
    k.gather_rows(ws.Yb, Y, idx)
    out = {}
    out["gather X,Y"] = med_us(lambda: (k.gather_rows(ws.Xb, X, idx),
                                        k.gather_rows(ws.Yb, Y, idx)), reps)
    A_prev = ws.Xb
    ops = model._ops
    for li, (op, w) in enumerate(zip(ops, ws.layers)):
        a = A_prev
        name = f"L{li + 1} fwd GEMM {a.shape[0]}x{a.shape[1]}x{op.units}"
        out[name] = med_us(lambda a=a, op=op, w=w: np.matmul(a, op.W.T, out=w.A), reps)
        whole = med_us(lambda a=a, op=op, w=w: op.forward(a, w, True), reps)
        out[f"L{li + 1} fwd rest (bias+act pass, wrappers)"] = max(0.0, whole - out[name])
        A_prev = w.A
    out["loss (softmax CE fused)"] = med_us(
        lambda: k.softmax_cross_entropy(ws.loss, ws.dout, A_prev, ws.Yb), reps)
    dout0 = ws.dout.copy()
    d = ws.dout
    for li in range(len(ops) - 1, -1, -1):
        op, w = ops[li], ws.layers[li]
        d_in = d.copy()
        need_dX = li > 0

        def bwd(op=op, w=w, d=d, d_in=d_in, need_dX=need_dX):
            d[...] = d_in       # backward works in place on dA: restore its input each call
            op.backward(d, w, need_dX)
        copy_us = med_us(lambda d=d, d_in=d_in: d.__setitem__(Ellipsis, d_in), reps)
        whole = med_us(bwd, reps) - copy_us
        gw = med_us(lambda op=op, w=w, d=d: np.matmul(d.T, w.X, out=op.dW), reps)
        out[f"L{li + 1} bwd dW GEMM {op.units}x{d.shape[0]}x{op.input_dim}"] = gw
        gx = 0.0
        if need_dX:
            gx = med_us(lambda op=op, w=w, d=d: np.matmul(d, op.W, out=w.dX), reps)
            out[f"L{li + 1} bwd dX GEMM {d.shape[0]}x{op.units}x{op.input_dim}"] = gx
        out[f"L{li + 1} bwd rest (dZ,db pass, wrappers)"] = max(0.0, whole - gw - gx)
        bwd()
        d = w.dX
    p = model.params
    no_sq = np.zeros(1)  # the (1,) squared norm; not read with clipping off (inf bounds)
    out["SGD update (flat, 235k)"] = med_us(
        lambda: k.sgd_update(p.data, NO_SHADOW, p.grad, 1e-9, 0.0, no_sq, math.inf, math.inf, 0.0,
                             p.n_decay), reps)
    ws.dout[...] = dout0
    return out


def whole_step_us(model, X, Y, bs, reps):
    ws = model._workspace(bs)
    k = model._bk.k
    idx = np.random.default_rng(1).permutation(X.shape[0])[:bs].astype(np.int64)
    opt = fd.optim.SGD(lr=1e-9)
    p = model.params

    def step():
        k.gather_rows(ws.Xb, X, idx)
        k.gather_rows(ws.Yb, Y, idx)
        model._step_costs(ws.Xb, ws.Yb, ws, 0.0)
        opt.step(p.data, p.grad, l2=0.0, n_l2=p.n_decay)
    return med_us(step, reps)


def fit_epoch_us_per_step(model, Xraw, yraw, bs, epochs=3):
    opt = fd.optim.SGD(lr=1e-9)
    model.fit(Xraw, yraw, optimizer=opt, epochs=1, batch_size=bs, verbose=0)
    t0 = time.perf_counter()
    model.fit(Xraw, yraw, optimizer=opt, epochs=epochs, batch_size=bs, verbose=0)
    dt = time.perf_counter() - t0
    steps = epochs * ((Xraw.shape[0] + bs - 1) // bs)
    return 1e6 * dt / steps


def torch_phases(X, y, bs, reps, threads):
    """PyTorch's phases; run in a process without fastdl (see ``_peers.TorchPeer``)."""
    import torch
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    shapes = [(256, 784), (128, 256), (10, 128)]
    weights = []
    for o, i in shapes:
        weights += [(rng.standard_normal((o, i)) * np.sqrt(2 / i)).astype(np.float32),
                    np.zeros(o, np.float32)]
    spec = {"weights": weights, "use_bias": [True] * 3, "activations": ["relu", "relu"],
            "loss": "categorical_crossentropy"}
    tr = P.TorchTrainer(spec, X, y, 1e-9, bs)
    perm = torch.randperm(X.shape[0])[:bs]
    xb, yb = tr.X[perm], tr.y[perm]
    out = {"index X,y": med_us(lambda: (tr.X[perm], tr.y[perm]), reps)}
    out["forward+loss"] = med_us(lambda: tr.loss_fn(tr.net(xb), yb), reps)

    def fb():
        tr.opt.zero_grad(set_to_none=True)
        tr.loss_fn(tr.net(xb), yb).backward()
    out["backward (= fwd+loss+bwd - fwd+loss)"] = med_us(fb, reps) - out["forward+loss"]
    fb()
    out["SGD.step"] = med_us(tr.opt.step, reps)
    out["whole step"] = med_us(lambda: tr.batch_step(tr.X[perm], tr.y[perm]), reps)
    tr.epoch()
    t0 = time.perf_counter()
    for _ in range(2):
        tr.epoch()
    out["fit-like epoch, per step"] = 1e6 * (time.perf_counter() - t0) / (
        2 * ((X.shape[0] + bs - 1) // bs))
    return out


def torch_in_subprocess(args):
    """Run this script's --torch-only mode in a process without fastdl's OMP settings."""
    import json
    import subprocess
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if P._USER_OMP_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = P._USER_OMP_WAIT_POLICY
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-only", "--batch", str(args.batch),
           "--threads", str(args.threads), "--reps", str(args.reps), "--rows", str(args.rows)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    Xraw, yraw = P.mnist_like(args.rows)
    if args.torch_only:
        import json
        print(json.dumps(torch_phases(Xraw, yraw, args.batch, args.reps, args.threads)))
        return
    P.set_threads(args.threads)
    model = P.dense_model([256, 128, 10], ["relu", "relu", "softmax"], 784, "cpu")
    X, Y = model._XY(Xraw, yraw)
    bs = args.batch
    with P.MachineLoad() as load:
        ph = phases(model, X, Y, bs, args.reps)
        whole = whole_step_us(model, X, Y, bs, args.reps)
        per_step_fit = fit_epoch_us_per_step(model, Xraw, yraw, bs)
        tph = torch_in_subprocess(args) if P.torch_available() else {}
    flops = P.flops_per_sample(model) * bs
    print(f"784-256-128-10, batch {bs}, {args.threads} threads; other load "
          f"{(load.foreign or 0):.0%}")
    print(f"{'fastdl phase':40s} {'us':>8s}  {'GFLOP/s':>8s}")
    total = 0.0
    for name, us in ph.items():
        total += us
        gf = ""
        if "GEMM" in name:
            dims = [int(v) for v in name.split()[-1].split("x")]
            gf = f"{2 * dims[0] * dims[1] * dims[2] / us / 1e3:8.1f}"
        print(f"{name:40s} {us:8.1f}  {gf:>8s}")
    print(f"{'sum of phases':40s} {total:8.1f}  {flops / total / 1e3:8.1f}")
    print(f"{'whole step (_step_costs + opt.step)':40s} {whole:8.1f}  {flops / whole / 1e3:8.1f}")
    print(f"{'fit epoch, per step':40s} {per_step_fit:8.1f}  {flops / per_step_fit / 1e3:8.1f}"
          f"   -> {bs / per_step_fit * 1e6:,.0f} samples/s")
    if tph:
        print(f"\n{'torch phase':40s} {'us':>8s}")
        for name, us in tph.items():
            print(f"{name:40s} {us:8.1f}")
        print(f"torch fit-like epoch: {bs / tph['fit-like epoch, per step'] * 1e6:,.0f} samples/s")


if __name__ == "__main__":
    main()
