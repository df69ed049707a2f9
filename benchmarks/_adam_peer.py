"""torch.optim.Adam over one flat float32 tensor, in a process of its own (the peer of
``test_bench_optim.py``).

Why a separate process: fastdl's config sets ``OMP_WAIT_POLICY=PASSIVE`` before any OpenMP
runtime starts, and PyTorch's libgomp would inherit it inside a fastdl process; PyTorch is timed
as its users run it (see ``_peers.TorchPeer``). This module never imports fastdl. Both processes
build the same buffers from the same seed (:func:`buffers`), so nothing large crosses the pipe.
Only one process computes at a time: the other waits on the pipe.

Protocol: one JSON command per stdin line, one JSON reply per stdout line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def buffers(n, seed=0):
    """(params, grads) float32: params ~ N(0, 1), grads ~ N(0, 0.01^2)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n, dtype=np.float32),
            (1e-2 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32))


class AdamPeer:
    """Drive the worker: ``setup(name, **kw)``, ``step(name) -> seconds``, ``sample(...)``."""

    def __init__(self, n, threads, seed=0):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)        # fastdl's setting, not the user's
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.info = self._call(cmd="init", n=int(n), threads=int(threads), seed=int(seed))

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

    def setup(self, name, **kw):
        """A fresh parameter tensor (the seed's params) with ``torch.optim.Adam(**kw)`` under
        ``name``, stepped once (state allocated, first-call costs paid). Several live at once;
        they share one gradient tensor."""
        self._call(cmd="setup", name=name, kw=kw)

    def step(self, name) -> float:
        """One ``opt.step()`` of ``name``; the worker's own wall time for it, in seconds."""
        return self._call(cmd="step", name=name)["seconds"]

    def sample(self, name, stride) -> np.ndarray:
        """The params of ``name`` at indices ``0, stride, 2 stride, ...``."""
        return np.array(self._call(cmd="sample", name=name, stride=int(stride))["values"],
                        np.float32)

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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _worker():
    import torch
    n = seed = g = None
    live = {}                                   # name -> (param tensor, optimizer)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "init":
                n, seed = cmd["n"], cmd["seed"]
                torch.set_num_threads(cmd["threads"])
                g = torch.from_numpy(buffers(n, seed)[1])
                reply = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
            elif cmd["cmd"] == "setup":
                live.pop(cmd["name"], None)
                p = torch.from_numpy(buffers(n, seed)[0]).requires_grad_(True)
                p.grad = g
                opt = torch.optim.Adam([p], lr=LR, betas=(BETA1, BETA2), eps=EPS, **cmd["kw"])
                opt.step()
                live[cmd["name"]] = (p, opt)
                reply = {"ok": True}
            elif cmd["cmd"] == "step":
                opt = live[cmd["name"]][1]
                t0 = time.perf_counter()
                opt.step()
                reply = {"seconds": time.perf_counter() - t0}
            elif cmd["cmd"] == "sample":
                p = live[cmd["name"]][0]
                reply = {"values": p.detach().numpy()[::cmd["stride"]].tolist()}
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
