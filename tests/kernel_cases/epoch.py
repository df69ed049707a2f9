"""Cases of ``fastdl/kernels/*/epoch.py`` (see ``tests/kernel_cases/__init__.py``).

A case is ``(net, m, batch_size, l2, optimizer)``: a network of ``NETS`` trained for one epoch
of m examples in a shuffled order with an optimizer of ``OPTIMIZERS`` (hyperparameters packed
as ``reference/optim.py:_fused_update`` documents), starting at step 4 (Adam's bias
correction). The workspace ``ws`` is scratch: the backends lay activations out differently.
"""

import numpy as np

from fastdl.kernels import ACTIVATIONS, LOSSES
from fastdl.kernels import OPTIMIZERS as OPT_CODES

from . import KernelCase

#: name -> (n_in, [(units, activation, bias?)], loss); the output layer is linear for the fused
#: sigmoid/softmax losses, any activation for mse
NETS = {
    "2-5-2-1 bce": (2, [(5, "relu", True), (2, "relu", True), (1, "linear", True)],
                    "binary_crossentropy"),
    "3-7-4 cce leaky/tanh": (3, [(7, "leaky_relu", True), (4, "tanh", False), (4, "linear", True)],
                             "categorical_crossentropy"),
    "4-6-3 mse sigmoid": (4, [(6, "sigmoid", False), (3, "tanh", True)], "mse"),
    "5-17-2 bce k=2": (5, [(17, "tanh", True), (2, "linear", False)], "binary_crossentropy"),
    "3-4-3-2 mse sigmoid out": (3, [(4, "leaky_relu", False), (3, "relu", False),
                                    (2, "sigmoid", False)], "mse"),
}
#: name -> (registry optimizer, float64 hyper, state rows)
OPTIMIZERS = {
    "sgd": ("sgd", [0.1, 0.0], 0),
    "sgd+wd": ("sgd", [0.1, 0.01], 0),
    "momentum": ("momentum", [0.05, 0.9, 0.9, 0.0, 0.0], 1),
    "nesterov": ("momentum", [0.05, 0.9, 0.0, 1.0, 0.001], 1),
    "rmsprop": ("rmsprop", [0.01, 0.9, 1e-8, 0.0], 1),
    "adam": ("adam", [0.01, 0.9, 0.999, 1e-8, 0.0, 0.0], 2),
    "adamw": ("adam", [0.01, 0.9, 0.999, 1e-8, 0.0, 0.01], 2),
}
ALPHA = 0.05
STEP = 4


def draw(d, net, m, batch, l2, optimizer):
    n_in, layers, loss = NETS[net]
    layout, off, inputs = [], 0, n_in
    for units, act, _ in layers:          # weights first: the L2 prefix
        layout.append([off, -1, units, inputs, ACTIVATIONS[act]])
        off += units * inputs
        inputs = units
    n_l2 = off
    for row, (units, _, bias) in zip(layout, layers):
        if bias:
            row[1] = off
            off += units
    k_out = layers[-1][0]
    if loss == "categorical_crossentropy":
        Y = np.eye(k_out, dtype=d.dtype)[d.rng.integers(0, k_out, size=m)]
    elif loss == "binary_crossentropy":
        Y = d.rng.integers(0, 2, size=(m, k_out)).astype(d.dtype)
    else:
        Y = d.rng.random((m, k_out)).astype(d.dtype)
    opt, hyper, n_state = OPTIMIZERS[optimizer]
    n_batches = (m + batch - 1) // batch
    correct = d.skip(np.float64) if loss == "mse" else d.out(n_batches, np.float64)
    return dict(costs=d.out(n_batches, np.float64), correct=correct, params=d.normal(off, 0.7),
                grads=d.out(off), state=(d.normal((n_state, off)) ** 2).astype(d.dtype),
                ws=d.out(batch * (n_in + 2 * sum(u for u, _, _ in layers))),
                X=d.normal((m, n_in)), Y=Y, order=d.rng.permutation(m).astype(np.int64),
                batch_size=batch, layout=np.array(layout, dtype=np.int64), loss=LOSSES[loss],
                l2=l2, n_l2=n_l2, alpha=ALPHA, opt_kind=OPT_CODES[opt],
                hyper=np.array(hyper, np.float64), step=STEP)


CPU = ([(net, m, batch, l2, "sgd") for net in NETS
        for m, batch, l2 in ((130, 32, 0.0), (130, 32, 0.7), (9, 1, 0.1), (20, 64, 0.0))]
       + [("3-7-4 cce leaky/tanh", 70, 16, 0.3, opt) for opt in OPTIMIZERS])
#: the simulator: tiny (its threads run in Python); more nets in kernels_sim.py, through both
#: cuda implementations (one-block kernel and per-batch launches)
SIM = [("3-7-4 cce leaky/tanh", 7, 3, 0.0, "sgd"), ("2-5-2-1 bce", 7, 3, 0.1, "adam")]

CASES = {
    "train_epoch": KernelCase(
        draw=draw, sim=SIM, cpu=CPU,
        parallel=[("5-17-2 bce k=2", 2100, 64, 0.1, "adam")],
        outputs=("costs", "correct", "params", "grads", "state"), scratch=("ws",),
        # several batches of updates: rounding differences of the summation orders compound
        rtol={np.float32: 1e-4, np.float64: 1e-11},
        cuda_rtol={np.float32: 2e-4, np.float64: 1e-10},
        host_args=("layout", "hyper"), cpu_parallel=False),
}
