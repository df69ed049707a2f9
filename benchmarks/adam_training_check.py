"""Issue 3 (b) and (c): training with Adam, fastdl vs PyTorch CPU (default and fused Adam).

    python benchmarks/adam_training_check.py

Same net, same data (in memory, reshuffled every epoch), float32, 2 threads each; medians of
interleaved rounds. Prints samples/s and ratios. (b) 784-256-128-10 relu/relu/softmax at batch
64/256/1024; (c) 2-5-2-1 relu/relu/sigmoid at batch 64.
"""

import statistics
import time

import numpy as np
import torch

import fastdl as fd

torch.set_num_threads(2)
fd.set_num_threads(2)
ROUNDS = 5


def fastdl_rate(widths, acts, X, y, bs, epochs):
    layers = [fd.Dense(u, activation=a) for u, a in zip(widths, acts)]
    model = fd.Sequential(layers, input_dim=X.shape[1], seed=0)
    opt = fd.optim.Adam(lr=1e-3)
    model.fit(X, y, optimizer=opt, epochs=1, batch_size=bs, verbose=0)      # compile, warm
    t = time.perf_counter()
    model.fit(X, y, optimizer=opt, epochs=epochs, batch_size=bs, verbose=0)
    return X.shape[0] * epochs / (time.perf_counter() - t)


def torch_rate(widths, acts, X, y, bs, epochs, fused):
    mods, n_in = [], X.shape[1]
    for u, a in zip(widths, acts):
        mods.append(torch.nn.Linear(n_in, u))
        if a == "relu":
            mods.append(torch.nn.ReLU())
        n_in = u
    net = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused, foreach=None if fused else False)
    binary = acts[-1] == "sigmoid"
    loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.astype(np.float32)).reshape(-1, 1) if binary else torch.from_numpy(y)
    m = X.shape[0]

    def epoch():
        perm = torch.randperm(m)
        for s in range(0, m, bs):
            idx = perm[s:s + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    epoch()
    t = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return m * epochs / (time.perf_counter() - t)


def compare(name, widths, acts, X, y, bs, epochs):
    rows = {"fastdl": [], "torch": [], "torch_fused": []}
    for _ in range(ROUNDS):
        rows["fastdl"].append(fastdl_rate(widths, acts, X, y, bs, epochs))
        rows["torch"].append(torch_rate(widths, acts, X, y, bs, epochs, fused=False))
        rows["torch_fused"].append(torch_rate(widths, acts, X, y, bs, epochs, fused=True))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{name:<16} b{bs:<5} fastdl {med['fastdl']:>12,.0f}  torch {med['torch']:>10,.0f}  "
          f"torch fused {med['torch_fused']:>10,.0f}  x torch {med['fastdl'] / med['torch']:.2f}  "
          f"x fused {med['fastdl'] / med['torch_fused']:.2f}", flush=True)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8192, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    for bs in (64, 256, 1024):
        compare("784-256-128-10", (256, 128, 10), ("relu", "relu", "softmax"), X, y, bs, 1)
    Xs, ys = fd.data.make_moons(16384, seed=0)
    compare("2-5-2-1", (5, 2, 1), ("relu", "relu", "sigmoid"), Xs.astype(np.float32), ys, 64, 3)
