"""Out-of-core training: a dataset on disk, streamed in shuffled blocks with bounded memory.

``fd.data.make_teacher_npy`` writes a teacher-network dataset to two ``.npy`` files chunk by
chunk (``fastdl make-data teacher --out X.npy`` does the same from the shell). ``model.fit``
given the *paths* (or ``np.memmap`` arrays) streams them: contiguous blocks are read in a
shuffled order by a background thread into an in-memory shuffle buffer, rows are permuted
inside it, every example is seen once per epoch, and memory stays at the buffers' size however
big the file is. The table compares that with loading the same file into memory.

    python examples/08_out_of_core.py
"""

import os
import tempfile

import numpy as np

import fastdl as fd
from _common import PeakRSS, Timer, figure, learning_curves, save, size, table

n, d, k = size(60_000, 20_000), size(784, 64), 10
epochs = 2
MiB = 2 ** 20


def net():
    return fd.Sequential([fd.Dense(256, activation="relu"), fd.Dense(128, activation="relu"),
                          fd.Dense(k, activation="softmax")], input_dim=d, seed=0)


def train(X, y):
    model = net()
    with Timer() as t:
        hist = model.fit(X, y, optimizer=fd.optim.Adam(lr=1e-3), epochs=epochs, batch_size=256,
                         verbose=0)
    return hist, n * epochs / t.seconds


warm = np.zeros((256, d), np.float32)
net().fit(warm, np.zeros(256, np.int64), epochs=1, batch_size=256, verbose=0)  # compile first

rows, curves = [], {}
with tempfile.TemporaryDirectory() as tmp:
    px, py = os.path.join(tmp, "X.npy"), os.path.join(tmp, "y.npy")
    with Timer() as t:
        fd.data.make_teacher_npy(px, py, n=n, n_features=d, n_classes=k, seed=0)
    print(f"wrote {n:,} x {d} float32 ({os.path.getsize(px) / MiB:,.0f} MiB) in {t.seconds:.1f}s")
    for name, load in (("streamed (.npy paths)", lambda: (px, py)),
                       ("in memory (np.load)", lambda: (np.load(px), np.load(py)))):
        with PeakRSS() as mem:
            hist, rate = train(*load())
        rows.append({"data": name, "samples/s": f"{rate:,.0f}",
                     "peak RSS above start": f"{(mem.peak - mem.start) / MiB:,.0f} MiB",
                     "final cost": hist["loss"][-1]})
        curves[name] = hist["loss"]

table(rows, ["data", "samples/s", "peak RSS above start", "final cost"],
      title=f"out of core: {d}-256-128-{k} net, {n:,} rows, {epochs} epochs, batch 256")
print(f"(stream buffers: {fd.config.STREAM_BUFFER_BLOCKS} blocks of "
      f"{fd.config.STREAM_BLOCK_BYTES / MiB:.0f} MiB, two of them)")

fig = figure(ncols=1, size=(5.0, 3.6))
if fig is not None:
    learning_curves(fig[1][0], curves, "training cost per epoch")
save(fig, "08_out_of_core.png")
