"""Who owns the threads: OpenMP wait policy and GEMM provider, measured on a training step.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/thread_policy_check.py

oneDNN (the bfloat16 GEMMs) runs on libgomp, the OpenMP runtime Numba's parallel kernels use;
OpenBLAS has its own pthreads pool. fastdl sets ``OMP_WAIT_POLICY=PASSIVE`` (NOTES.md: with
spinning OpenMP threads, alternating OpenBLAS GEMMs and parallel Numba kernels ran 40x
slower), which makes libgomp's workers sleep at once after every parallel region; every oneDNN
GEMM then starts by waking them. ``GOMP_SPINCOUNT`` bounds the spin before sleeping. Both are
read when libgomp starts, so each configuration runs in a fresh process.

For each (wait policy, spin count, float32 GEMM provider) the 784-256-128-10 net trains with
Adam at batch 64/256/1024 (in memory, 2 threads); the float32 ``dnnl_sgemm`` stands in for
the bfloat16 GEMM on CPUs without bfloat16 instructions (same library, same threading). A
second net, 784-2048-2048-10 at batch 256, has 5.8M parameters: its Adam step runs as a
parallel Numba kernel between the oneDNN GEMMs, the contention case.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = [  # (label, env overrides, float GEMM provider)
    ("openblas, PASSIVE (fastdl default)", {}, "blas"),
    ("onednn, PASSIVE (fastdl default)", {}, "onednn"),
    ("onednn, PASSIVE + GOMP_SPINCOUNT=10k", {"GOMP_SPINCOUNT": "10000"}, "onednn"),
    ("onednn, PASSIVE + GOMP_SPINCOUNT=100k", {"GOMP_SPINCOUNT": "100000"}, "onednn"),
    ("onednn, OMP_WAIT_POLICY=ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}, "onednn"),
    ("openblas, PASSIVE + GOMP_SPINCOUNT=100k", {"GOMP_SPINCOUNT": "100000"}, "blas"),
]
CASES = [("784-256-128-10", 64), ("784-256-128-10", 256), ("784-256-128-10", 1024),
         ("784-2048-2048-10", 256)]


def child(provider, rounds, m):
    sys.path.insert(0, HERE)
    import _mixed as MX
    import fastdl as fd
    fd.set_num_threads(2)
    fd.config.FLOAT_GEMM = provider
    out = {}
    for net, bs in CASES:
        X, y = MX.data(m if net.startswith("784-256") else m // 4)
        rn = MX.FastdlRunner(net, X, y, bs)
        ts = [rn.epoch() for _ in range(rounds)]
        out[f"{net}:{bs}"] = X.shape[0] / statistics.median(ts)
    print(json.dumps(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    rounds, m = 5, 8192
    results = {}
    for label, env_over, provider in CONFIGS:
        env = dict(os.environ)
        env.update(env_over)        # fastdl only sets OMP_WAIT_POLICY when it is unset
        time.sleep(1.0)
        r = subprocess.run([sys.executable, __file__, "--child", provider, str(rounds), str(m)],
                           env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode:
            print(label, "FAILED", r.stderr[-2000:])
            continue
        results[label] = json.loads(r.stdout.strip().splitlines()[-1])
        print(label, {k: f"{v:,.0f}" for k, v in results[label].items()}, flush=True)
    base = results.get(CONFIGS[0][0])
    print("\nsamples/s relative to", CONFIGS[0][0])
    for label, res in results.items():
        print(f"  {label:<42}" + "  ".join(f"{k} {v / base[k]:.2f}x" for k, v in res.items()))


if __name__ == "__main__":
    main()
