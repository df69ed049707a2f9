"""The PyTorch peer of ``test_bench_regularization.py``: 784-256-128-10 with dropout or batch
norm, ``torch.optim.Adam``, in a process of its own (why: see ``_peers.TorchPeer``). This module
never imports fastdl.

Variants (the same layers as the fastdl nets, the same initial weights):
    plain      Linear-ReLU, Linear-ReLU, Linear
    dropout    Linear-ReLU-Dropout(p), Linear-ReLU-Dropout(p), Linear        (p = 1 - keep_prob)
    batchnorm  Linear(no bias)-BatchNorm1d-ReLU, twice, Linear   (BatchNorm1d momentum 0.1 is
               fastdl's 0.9)

Protocol: one JSON command per stdin line, one JSON reply per stdout line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np


class RegPeer:
    """Drive the worker: ``setup(...)`` (again for each case: the process and its torch import
    are reused), ``check_step(rows, lr)``, ``eval_cost(rows)``, ``epochs(n) -> seconds``."""

    def __init__(self):
        import tempfile
        self._dir = tempfile.mkdtemp(prefix="fastdl-bench-reg-")
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)        # fastdl's setting, not the user's
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.info = None

    def setup(self, variant, weights, X, y, lr, batch_size, threads, keep_prob=1.0, seed=0):
        """A fresh net of ``variant`` from ``weights``, with its Adam and the data."""
        path = os.path.join(self._dir, "setup.npz")
        np.savez(path, X=X, y=y, **{f"w{i}": w for i, w in enumerate(weights)})
        self.info = self._call(cmd="setup", npz=path, n_weights=len(weights), variant=variant,
                               keep_prob=keep_prob, lr=lr, batch_size=batch_size,
                               threads=threads, seed=seed)
        return self

    def _call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker died (exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"PyTorch worker: {reply['error']}")
        return reply

    def check_step(self, rows, lr):
        """One SGD step (train mode) on a fresh copy of the initial net, first ``rows`` rows:
        (cost, parameters and buffers in fastdl's get_weights order). SGD, not Adam: Adam's
        first step is lr * g / |g|, so float32 rounding of near-zero gradients flips it."""
        out = os.path.join(self._dir, "step.npz")
        r = self._call(cmd="check_step", rows=int(rows), out=out, lr=float(lr))
        with np.load(out) as z:
            return r["cost"], [z[f"w{i}"] for i in range(len(z.files))]

    def eval_cost(self, rows):
        """The loss on the first ``rows`` rows in eval mode (dropout off, running stats)."""
        return self._call(cmd="eval_cost", rows=int(rows))["cost"]

    def epochs(self, n=1) -> float:
        """Run ``n`` training epochs; the worker's own wall time for them, in seconds."""
        return self._call(cmd="epochs", n=int(n))["seconds"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self._call(cmd="quit")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        import shutil
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _build(torch, variant, weights, keep_prob):
    """The torch net, its tensors listed in fastdl's get_weights order."""
    nn = torch.nn
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    mods, order = [], []
    w = list(weights)
    if variant == "batchnorm":                  # W, gamma, beta, running_mean, running_var
        for _ in range(2):
            W, g, b, rm, rv = (w.pop(0) for _ in range(5))
            lin = nn.Linear(W.shape[1], W.shape[0], bias=False)
            bn = nn.BatchNorm1d(W.shape[0], momentum=0.1, eps=1e-5)
            with torch.no_grad():
                lin.weight.copy_(t(W))
                bn.weight.copy_(t(g))
                bn.bias.copy_(t(b))
                bn.running_mean.copy_(t(rm))
                bn.running_var.copy_(t(rv))
            mods += [lin, bn, nn.ReLU()]
            order += [lin.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var]
    else:
        for _ in range(2):
            W, b = w.pop(0), w.pop(0)
            lin = nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                lin.weight.copy_(t(W))
                lin.bias.copy_(t(b))
            mods += [lin, nn.ReLU()]
            if variant == "dropout":
                mods.append(nn.Dropout(p=1.0 - keep_prob))
            order += [lin.weight, lin.bias]
    W, b = w.pop(0), w.pop(0)
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(t(W))
        lin.bias.copy_(t(b))
    mods.append(lin)
    order += [lin.weight, lin.bias]
    net = nn.Sequential(*mods)
    return net, order


def _worker():
    import torch
    st = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "setup":
                torch.set_num_threads(int(cmd["threads"]))
                torch.manual_seed(int(cmd["seed"]))
                with np.load(cmd["npz"]) as z:
                    X, y = z["X"], z["y"]
                    weights = [z[f"w{i}"] for i in range(cmd["n_weights"])]
                net, _ = _build(torch, cmd["variant"], weights, cmd["keep_prob"])
                st = dict(variant=cmd["variant"], weights=weights, keep=cmd["keep_prob"],
                          net=net, lr=cmd["lr"], bs=int(cmd["batch_size"]),
                          opt=torch.optim.Adam(net.parameters(), lr=cmd["lr"]),
                          X=torch.from_numpy(np.ascontiguousarray(X, np.float32)),
                          y=torch.from_numpy(np.ascontiguousarray(y, np.int64)),
                          loss=torch.nn.CrossEntropyLoss(),
                          gen=torch.Generator().manual_seed(int(cmd["seed"])))
                reply = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
            elif cmd["cmd"] == "check_step":
                net, order = _build(torch, st["variant"], st["weights"], st["keep"])
                opt = torch.optim.SGD(net.parameters(), lr=cmd["lr"])
                r = int(cmd["rows"])
                net.train()
                opt.zero_grad(set_to_none=True)
                loss = st["loss"](net(st["X"][:r]), st["y"][:r])
                loss.backward()
                opt.step()
                np.savez(cmd["out"], **{f"w{i}": p.detach().numpy()
                                        for i, p in enumerate(order)})
                reply = {"cost": float(loss.detach())}
            elif cmd["cmd"] == "eval_cost":
                net, _ = _build(torch, st["variant"], st["weights"], st["keep"])
                net.eval()
                r = int(cmd["rows"])
                with torch.no_grad():
                    reply = {"cost": float(st["loss"](net(st["X"][:r]), st["y"][:r]))}
            elif cmd["cmd"] == "epochs":
                net, opt, loss_fn, X, y, bs = (st[k] for k in ("net", "opt", "loss", "X", "y",
                                                               "bs"))
                net.train()
                t0 = time.perf_counter()
                for _ in range(int(cmd["n"])):
                    perm = torch.randperm(X.shape[0], generator=st["gen"])
                    for s in range(0, X.shape[0], bs):
                        idx = perm[s:s + bs]
                        opt.zero_grad(set_to_none=True)
                        loss_fn(net(X[idx]), y[idx]).backward()
                        opt.step()
                reply = {"seconds": time.perf_counter() - t0}
            elif cmd["cmd"] == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                reply = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:  # reported to the parent, which raises
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    _worker()
