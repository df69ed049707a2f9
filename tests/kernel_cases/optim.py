"""Cases of ``fastdl/kernels/*/optim.py`` (see ``tests/kernel_cases/__init__.py``).

A case is ``(n, config, clip, flavour, n_l2)``: ``config`` indexes the optimizer's
hyperparameter sets below, ``clip`` is ``(max_norm, clip_value)`` of the inline clipping (inf:
off), ``flavour`` is "normal", "zeros" (every other gradient 0) or "nan" (one NaN gradient),
``n_l2`` the length of the weight prefix the L2 term applies to; an optional sixth entry
``n_shadow`` is the length of the bfloat16 weight shadow the update also writes (mixed
precision: the first ``n_shadow`` parameters, float32 only; 0 or float64: no shadow). Gradients are scaled by 10
when clipping is on, so that it bites; ``sum_sq`` is NaN when norm clipping is off (a kernel
that reads it then fails).
"""

import numpy as np

from fastdl.kernels import BF16
from fastdl.kernels.cpu import optim as cpu_optim

from . import KernelCase

INF = np.inf
CONFIGS = {
    "sgd_update": [dict(lr=0.1, weight_decay=0.0), dict(lr=0.05, weight_decay=0.01)],
    "momentum_update": [dict(lr=0.1, beta=0.9, dampening=0.9, nesterov=False, weight_decay=0.0),
                        dict(lr=0.1, beta=0.8, dampening=0.0, nesterov=True,
                             weight_decay=0.01)],
    "rmsprop_update": [dict(lr=0.01, beta=0.9, eps=1e-8, weight_decay=0.0),
                       dict(lr=0.02, beta=0.99, eps=1e-6, weight_decay=0.02)],
    "adam_update": [dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, step=1, weight_decay=0.0,
                         decoupled_decay=0.0),
                    dict(lr=0.003, beta1=0.8, beta2=0.99, eps=1e-7, step=7, weight_decay=0.01,
                         decoupled_decay=0.05)],
}
#: state rows of each kernel and how they start (velocity / first moment: any sign; second
#: moments: >= 0)
STATE = {"sgd_update": (), "momentum_update": (("velocity", "any"),),
         "rmsprop_update": (("square_avg", "pos"),),
         "adam_update": (("m", "any"), ("v", "pos"))}
#: inline clipping (max_norm, clip_value): off, by norm (active; inactive), by value, both
CLIPS = [(INF, INF), (1.0, INF), (1e9, INF), (INF, 0.5), (2.0, 0.3)]


def _draw(name):
    def draw(d, n, config, clip, flavour, n_l2, n_shadow=0):
        args = dict(CONFIGS[name][config])
        args["params"] = d.normal(n)
        args["shadow"] = d.out(n_shadow, BF16) if n_shadow and d.low else d.no16(1)
        for row, sign in STATE[name]:
            args[row] = d.normal(n) if sign == "any" else d.normal(n) ** 2
        g = d.normal(n, 1.0 if clip == (INF, INF) else 10.0)
        if flavour == "zeros":
            g[::2] = 0
        elif flavour == "nan":
            g[n // 2] = np.nan
        args["grads"] = g
        g64 = g.astype(np.float64)
        args["sum_sq"] = np.array([g64 @ g64 if np.isfinite(clip[0]) else np.nan])
        args["max_norm"], args["clip_value"] = clip
        args["l2"], args["n_l2"] = (0.03 if n_l2 else 0.0), n_l2
        return args
    return draw


B = cpu_optim._BLOCK            # elements per task of the cpu parallel loops
CPU = ([(n, cfg, clip, "normal", n // 2) for n in (1, 7, 1000) for cfg in (0, 1)
        for clip in CLIPS]
       + [(n, 1, (INF, INF), "normal", n_l2) for n in (7, 1000) for n_l2 in (0, n)]
       + [(n, cfg, clip, flavour, n // 3) for n in (7, 1000) for cfg in (0, 1)
          for clip in (CLIPS[0], CLIPS[4]) for flavour in ("zeros", "nan")])
#: several blocks with a partial last one; L2 prefix ending inside a block and on its edge
PARALLEL = ([(3 * B + 7, 1, (INF, INF), "normal", n_l2)
             for n_l2 in (0, B, 2 * B + 17, 3 * B + 7)]
            + [(3 * B + 7, 0, (INF, INF), "nan", B - 1),
               (2 * B + 7, 1, (2.0, 0.3), "normal", B + 3), (2 * B + 7, 0, (1.0, INF), "nan", 5)])
SIM = [(11, cfg, clip, "normal", 6) for cfg in (0, 1) for clip in CLIPS] \
    + [(11, 1, CLIPS[4], "nan", 3), (11, 1, CLIPS[0], "normal", 6, 6),
       (11, 0, CLIPS[4], "normal", 4, 6)]
#: the shadow: the whole weight prefix (its length n_decay = n_l2 in the model), shorter and
#: longer than the L2 prefix, with clipping; across blocks and ending inside one (parallel)
CPU += [(n, cfg, clip, "normal", n_l2, n_sh) for n in (7, 1000) for cfg in (0, 1)
        for clip in (CLIPS[0], CLIPS[4]) for n_l2, n_sh in ((n // 2, n // 2), (n // 3, n - 1),
                                                            (n, 1))]
PARALLEL += [(3 * B + 7, 1, (INF, INF), "normal", 2 * B + 17, 2 * B + 17),
             (3 * B + 7, 0, (2.0, 0.3), "normal", B - 1, 3 * B + 7),
             (3 * B + 7, 1, (INF, INF), "normal", 3 * B, B + 5)]

#: float32: the update's few operations round differently in fused (cpu/cuda) and NumPy
#: (reference) evaluation order; the parameters are compared at their own scale (~1)
CASES = {name: KernelCase(draw=_draw(name), sim=SIM, cpu=CPU, parallel=PARALLEL,
                          outputs=("params", "shadow") + tuple(r for r, _ in STATE[name]),
                          rtol={np.float32: 2e-6, np.float64: 1e-14},
                          cuda_rtol={np.float32: 8e-5, np.float64: 4e-12},
                          cpu_parallel=True)
         for name in CONFIGS}
