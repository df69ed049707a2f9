"""Mixed precision on the CPU (compute_dtype="bfloat16"): speed beside fastdl float32 and
PyTorch (float32 and autocast bfloat16, fused Adam), GEMM rates against the machine's ceilings,
and accuracy against float32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mixed_precision_check.py
    ... --cases 784-256-128-10:64,784-256-128-10:256 --rounds 5 --json out.json
    ... --accuracy                   # dev accuracy / loss curves, float32 vs bfloat16

Speed: the four trainers of ``_mixed.py`` run interleaved round by round (one epoch each, a
pause between two so idle OpenMP/BLAS threads are asleep); medians of samples/s and of the
per-round ratios. Before each case the GEMM ceilings at the net's shapes are measured (float32:
OpenBLAS and ``dnnl_sgemm``; bfloat16: ``dnnl_gemm_bf16bf16f32`` where the CPU runs it) and
printed with the OpenBLAS kernel; "GEMM rate" is the exact flop count of a training step
(forward, dW, dX except the first layer's) times samples/s, beside the ceiling a step at those
shapes could reach. Targets (issue 14) are printed as met / MISSED; on a CPU without bfloat16
instructions fastdl's bfloat16 row is the exact emulation (no speed-up by design) and the
targets are not applicable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _peers as P  # noqa: E402  (first: records the user's OMP_WAIT_POLICY)
import _mixed as MX  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_CASES = ["784-256-128-10:64", "784-256-128-10:256", "784-256-128-10:1024",
                 "784-2048-2048-10:256"]
#: (net, batch) -> {ratio name: target}
TARGETS = {("784-256-128-10", 64): {"bf16/f32": 1.2, "bf16/torch_bf16": 2.0},
           ("784-256-128-10", 256): {"bf16/f32": 1.5, "bf16/torch_bf16": 1.4},
           ("784-256-128-10", 1024): {"bf16/f32": 1.5, "bf16/torch_bf16": 1.4,
                                      "gemm/ceiling": 0.70},
           ("784-2048-2048-10", 256): {"bf16/f32": 1.7, "bf16/torch_bf16": 1.3}}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
        flags = next(x.split(":", 1)[1].split() for x in lines if x.startswith("flags"))
        bf = [f for f in flags if "bf16" in f or f.startswith("amx")]
        avx512 = any(f.startswith("avx512f") for f in flags)
        return f"{model} ({os.cpu_count()} CPUs; AVX-512 {'yes' if avx512 else 'no'}; " \
               f"bf16 flags: {','.join(bf) or 'none'})"
    except (OSError, StopIteration):
        return platform.processor()


def measure_case(net, batch, rows, rounds, m):
    X, y = MX.data(m)
    widths, _ = MX.NETS[net]
    ceil = P.gemm_ceilings(P.net_gemm_shapes(widths, 784, batch))
    P.print_ceilings(ceil)
    runners = {}
    try:
        for r in rows:
            runners[r] = MX.runner(r, net, X, y, batch)
        times = {r: [] for r in rows}
        for _ in range(rounds):
            for r in rows:
                P.settle()
                times[r].append(runners[r].epoch())
        labels = {r: runners[r].label for r in rows}
    finally:
        for rn in runners.values():
            rn.close()
    sps = {r: m / statistics.median(t) for r, t in times.items()}
    ratio = lambda a, b: statistics.median(tb / ta for ta, tb in zip(times[a], times[b])) \
        if a in times and b in times else None  # noqa: E731
    res = {"net": net, "batch": batch, "rows": m, "samples_per_s": sps, "labels": labels,
           "round_s": times, "ceilings": ceil,
           "ratios": {"bf16/f32": ratio("fastdl_bf16", "fastdl_f32"),
                      "bf16/torch_bf16": ratio("fastdl_bf16", "torch_bf16"),
                      "f32/torch_f32": ratio("fastdl_f32", "torch_f32"),
                      "torch_bf16/torch_f32": ratio("torch_bf16", "torch_f32")}}
    flops = MX.step_flops(net)
    for r in ("fastdl_f32", "fastdl_bf16"):
        if r in sps:
            res[f"gemm_gflops_{r}"] = flops * sps[r] / 1e9
    res["ceiling_f32"] = MX.ceiling_of_step(net, batch, ceil, "float32")
    res["ceiling_bf16"] = MX.ceiling_of_step(net, batch, ceil, "dnnl_bf16")
    if res["ceiling_bf16"] and "gemm_gflops_fastdl_bf16" in res:
        res["ratios"]["gemm/ceiling"] = res["gemm_gflops_fastdl_bf16"] / res["ceiling_bf16"]
    return res


def print_case(res, native):
    print(f"\n{res['net']}, batch {res['batch']}, Adam, {res['rows']} rows")
    for r, v in res["samples_per_s"].items():
        extra = ""
        if f"gemm_gflops_{r}" in res:
            extra = f"   GEMM rate {res[f'gemm_gflops_{r}']:6.0f} GFLOP/s"
        print(f"  {res['labels'][r]:<42} {v:>12,.0f} samples/s{extra}")
    c32, c16 = res["ceiling_f32"], res["ceiling_bf16"]
    print(f"  step ceilings at these shapes: float32 {c32:.0f} GFLOP/s, bfloat16 "
          + ("-" if c16 is None else f"{c16:.0f} GFLOP/s"))
    targets = TARGETS.get((res["net"], res["batch"]), {})
    for k, v in res["ratios"].items():
        if v is None:
            continue
        t = targets.get(k)
        verdict = ""
        if t is not None:
            verdict = (f"  target >= {t}: " + ("met" if v >= t else "MISSED")) if native else \
                f"  target >= {t}: n/a (no bfloat16 instructions: emulated)"
        print(f"  {k:<22} {v:6.2f}x{verdict}")


def accuracy(epochs, seed=0):
    """Dev accuracy and loss curves, float32 vs bfloat16, same seed: teacher data (784
    features, 10 classes) and digits."""
    fd = P._fd()
    out = {}
    rng = np.random.default_rng(seed)
    Xt, yt = P.mnist_like(24000, seed=seed)
    Xd, yd = fd.data.load_digits() if hasattr(fd.data, "load_digits") else (None, None)
    sets = {"teacher-784": (Xt, yt)}
    if Xd is not None:
        sets["digits"] = (np.asarray(Xd, np.float32), yd)
    for name, (X, y) in sets.items():
        perm = rng.permutation(len(X))
        X, y = X[perm], y[perm]
        n_dev = len(X) // 5
        curves = {}
        for cd in (None, "bfloat16"):
            widths = [256, 128, int(y.max()) + 1]
            model = fd.Sequential([fd.Dense(widths[0], activation="relu"),
                                   fd.Dense(widths[1], activation="relu"),
                                   fd.Dense(widths[2], activation="softmax")],
                                  input_dim=X.shape[1], seed=seed, compute_dtype=cd,
                                  allow_slow=cd is not None and not fd.bf16_supported())
            model.standardizer = fd.Standardizer()
            h = model.fit(X[n_dev:], y[n_dev:], optimizer=fd.optim.Adam(1e-3), epochs=epochs,
                          batch_size=128, validation_data=(X[:n_dev], y[:n_dev]), verbose=0)
            curves[cd or "float32"] = {"loss": h.history["loss"],
                                       "val_accuracy": h.history["val_accuracy"]}
        a32 = curves["float32"]["val_accuracy"][-1]
        a16 = curves["bfloat16"]["val_accuracy"][-1]
        rel = max(abs(a - b) / a for a, b in zip(curves["float32"]["loss"],
                                                 curves["bfloat16"]["loss"]))
        print(f"{name}: dev accuracy float32 {a32:.4f}  bfloat16 {a16:.4f}  "
              f"(diff {100 * (a16 - a32):+.2f} points; target within 0.5); loss curves differ "
              f"by at most {100 * rel:.2f}% per epoch")
        out[name] = curves
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES))
    ap.add_argument("--rows", default=",".join(MX.ROWS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--m", type=int, default=16384, help="training rows per epoch")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--epochs", type=int, default=10, help="--accuracy: epochs")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    fd = P._fd()
    P.set_threads(P.THREADS)
    native = fd.bf16_supported()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu_model()}  threads {P.THREADS}  "
          f"bfloat16: {fd.precision.bf16_status()[1]}")
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "native": native}
    if a.accuracy:
        report["accuracy"] = accuracy(a.epochs)
    else:
        rows = [r for r in a.rows.split(",") if r]
        if not P.torch_available():
            rows = [r for r in rows if not r.startswith("torch")]
        report["cases"] = []
        for case in a.cases.split(","):
            net, batch = case.split(":")
            res = measure_case(net, int(batch), rows, a.rounds, a.m)
            print_case(res, native)
            report["cases"].append(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
