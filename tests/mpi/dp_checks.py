"""Rank script of tests/test_distributed.py: run under ``mpiexec -n 2`` (or alone for one rank).

    python dp_checks.py OUTDIR CHECK [CHECK ...]

Each check trains small float64 models on every rank and writes what the test asserts to
``OUTDIR/<check>_rank<r>.npz``; the one-process references are computed here too, in the same
process, with the ordinary (non-distributed) ``fit``.
"""

import os
import signal
import sys

import numpy as np

import fastdl as fd
import fastdl.distributed as dist
from fastdl.data import batches as batches_mod
from fastdl.distributed.trainer import _mix_seed

OUT = sys.argv[1]
RANK, SIZE = dist.rank(), dist.size()


def save(name, **arrays):
    np.savez(os.path.join(OUT, f"{name}_rank{RANK}.npz"), **arrays)


def barrier():
    from mpi4py import MPI
    MPI.COMM_WORLD.Barrier()


def spirals(n=1001):
    X, y = fd.data.make_spirals(n, n_classes=3, noise=0.2, seed=1)
    return X.astype(np.float64), y


def net(seed, layers=None, n_in=2, loss=None, backend="cpu"):
    layers = layers or [fd.Dense(16, activation="tanh"), fd.Dense(8, activation="relu"),
                        fd.Dense(3, activation="softmax")]
    return fd.Sequential(layers, input_dim=n_in, dtype="float64", seed=seed, backend=backend,
                         loss=loss)


# ------------------------------------------------------------------------------ checks
def check_equivalence():
    """2 ranks x 128 (global batch 256) vs 1 process x 256: SGD and Adam (cpu backend), Adam
    (numpy backend), L2, 3 epochs, a last batch of 233 rows (117 + 116); each rank starts from
    its OWN initialization (seed 3 + rank): the broadcast makes it rank 0's. Rank-suffixed
    checkpoint paths: only rank 0 may write."""
    X, y = spirals()
    dev = spirals(200)
    out = {}
    for name, make_opt, bk in (("sgd", lambda: fd.optim.SGD(lr=0.2), "cpu"),
                               ("adam", lambda: fd.optim.Adam(lr=0.01), "cpu"),
                               ("numpy", lambda: fd.optim.Adam(lr=0.01), "numpy")):
        ref = net(3, backend=bk)
        h_ref = ref.fit(X, y, optimizer=make_opt(), epochs=3, batch_size=256, l2=0.05,
                        validation_data=dev, verbose=0)
        model = net(3 + RANK, backend=bk)
        ck = os.path.join(OUT, f"ck_{name}_rank{RANK}.npz")
        h = model.fit(X, y, optimizer=make_opt(), epochs=3, batch_size=256, l2=0.05,
                      validation_data=dev, verbose=0, distributed=True,
                      callbacks=[fd.ModelCheckpoint(ck, monitor="loss")])
        out[f"{name}_params"] = model.params.snapshot()
        out[f"{name}_ref"] = ref.params.snapshot()
        out[f"{name}_loss"] = np.array(h.history["loss"])
        out[f"{name}_loss_ref"] = np.array(h_ref.history["loss"])
        out[f"{name}_val"] = np.array(h.history["val_loss"])
        out[f"{name}_val_ref"] = np.array(h_ref.history["val_loss"])
        out[f"{name}_steps"] = np.array([model.steps_trained, ref.steps_trained])
    save("equivalence", **out)


def check_broadcast():
    """Different seeds and inputs per rank: after fit(epochs=0) every rank holds rank 0's
    initial parameters, seed and standardizer (fitted by rank 0 on rank 0's X)."""
    X, y = spirals(300)
    X = X + RANK                        # the ranks' X differ: the standardizer is rank 0's
    model = net(10 + RANK)
    model.standardizer = fd.Standardizer()
    before = model.params.snapshot()
    model.fit(X, y, epochs=0, batch_size=64, verbose=0, distributed=True)
    save("broadcast", before=before, after=model.params.snapshot(),
         seed=np.array([model.seed]), mean=model.standardizer.mean,
         std=model.standardizer.std, own_mean=X.mean(axis=0))


def check_stream():
    """Out of core: .npy files, small blocks; each rank reads only its rows; the result equals
    the in-memory distributed run fed the same (stream) order and the one-process streamed run."""
    X, y = fd.data.make_blobs(700, n_classes=3, n_features=6, seed=2)
    px, py = os.path.join(OUT, "X.npy"), os.path.join(OUT, "y.npy")
    if RANK == 0:
        np.save(px, X.astype(np.float64))
        np.save(py, y)
    barrier()
    fd.config.STREAM_BLOCK_BYTES = 48 * 10      # 10 rows of 6 float64 per block
    fd.config.STREAM_BUFFER_BLOCKS = 13         # a rank's chunks: 65 rows, batches straddle
    layers = lambda: [fd.Dense(8, activation="relu"), fd.Dense(3, activation="softmax")]
    ref = net(5, layers(), n_in=6)
    ref.fit(px, py, optimizer=fd.optim.Adam(lr=0.01), epochs=2, batch_size=99, l2=0.01,
            verbose=0)
    rows_read = [0]
    orig = batches_mod._FileRows.read

    def counting(self, fd_, start, count, out):
        if self.name == "X":
            rows_read[0] += count
        return orig(self, fd_, start, count, out)
    batches_mod._FileRows.read = counting
    model = net(5, layers(), n_in=6)
    model.fit(px, py, optimizer=fd.optim.Adam(lr=0.01), epochs=2, batch_size=99, l2=0.01,
              verbose=0, distributed=True)
    batches_mod._FileRows.read = orig
    save("stream", params=model.params.snapshot(), ref=ref.params.snapshot(),
         rows_read=np.array([rows_read[0]]))


def _one_step_expected(make, X, y, seeds, lr):
    """p0 - lr * mean_q grad_q: rank q's gradient on its half of the batch (shuffle off)."""
    half = X.shape[0] // 2
    grads = []
    for q, seed in enumerate(seeds):
        m = make()
        m.seed = seed
        _, g = m.loss_and_grads(X[q * half:(q + 1) * half], y[q * half:(q + 1) * half])
        grads.append(np.concatenate([a.ravel() for a in g]))
    m = make()
    p0 = np.concatenate([a.ravel() for a in m.get_weights()])
    return p0 - lr * (grads[0] + grads[1]) / 2


def check_dropout():
    """Dropout masks differ per rank: one SGD step equals the mean of the two halves'
    gradients with rank 0's masks from the model seed and rank 1's from mix(seed, 1)."""
    X, y = fd.data.make_moons(64, noise=0.2, seed=4)
    make = lambda: net(7, [fd.Dense(32, activation="relu"), fd.Dropout(keep_prob=0.5),
                           fd.Dense(1, activation="sigmoid")])
    model = make()
    model.fit(X, y, optimizer=fd.optim.SGD(lr=0.5), epochs=1, batch_size=64, shuffle=False,
              verbose=0, distributed=True)
    got = np.concatenate([a.ravel() for a in model.get_weights()])
    save("dropout", got=got,
         expected=_one_step_expected(make, X, y, [7, _mix_seed(7, 1)], 0.5),
         same_masks=_one_step_expected(make, X, y, [7, 7], 0.5))


def check_batchnorm():
    """Per-rank statistics (default): one SGD step equals the mean of the halves' gradients,
    each normalized with its own half's statistics; running statistics are rank 0's on every
    rank. sync=True: 2 ranks x 32 equal 1 process x 64 over 3 epochs (Adam), running
    statistics included."""
    X, y = fd.data.make_moons(64, noise=0.2, seed=4)
    make = lambda sync=False: net(8, [fd.Dense(16), fd.BatchNorm(sync=sync),
                                      fd.Activation("relu"), fd.Dense(1, activation="sigmoid")])
    model = make()
    model.fit(X, y, optimizer=fd.optim.SGD(lr=0.5), epochs=1, batch_size=64, shuffle=False,
              verbose=0, distributed=True)
    w = model.get_weights()
    keys = model._weight_keys()         # (layer, name, is_state) per get_weights() entry
    params = np.concatenate([np.full(a.size, not st) for a, (_, _, st) in zip(w, keys)])
    state = lambda m: np.concatenate([a.ravel() for a, (_, _, st)
                                      in zip(m.get_weights(), keys) if st])
    ref_half0 = make()
    # rank 0's half, one training step from the same weights: its running statistics (taken
    # in the forward pass, before the update; loss_and_grads leaves them alone)
    ref_half0.fit(X[:32], y[:32], optimizer=fd.optim.SGD(lr=0.5), epochs=1, batch_size=32,
                  shuffle=False, verbose=0)
    exp = _one_step_expected(make, X, y, [8, 8], 0.5)
    Xs, ys = fd.data.make_moons(256, noise=0.2, seed=5)
    sync = make(True)
    sync.fit(Xs, ys, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=64, verbose=0,
             distributed=True)
    single = make(True)
    single.fit(Xs, ys, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=64, verbose=0)
    flat = lambda m: np.concatenate([a.ravel() for a in m.get_weights()])
    save("batchnorm", got=np.concatenate([a.ravel() for a in w])[params],
         expected=exp[params], running=state(model), running_half0=state(ref_half0),
         sync=flat(sync), sync_ref=flat(single))


def check_fault():
    """Checkpoint every epoch; in epoch 3 rank 1 dies (SIGKILL) or hangs (SIGSTOP,
    ``FAULT=stop``): mpiexec ends the job when a rank dies; for a hung rank rank 0 must stop
    with a DistributedError within the timeout (FASTDL_DIST_TIMEOUT). The checkpoint stays."""
    X, y = spirals()
    sig = signal.SIGSTOP if os.environ.get("FAULT") == "stop" else signal.SIGKILL

    class Die(fd.Callback):
        """Rank 1 goes after the first step of epoch 3: that step's allreduce completed, so
        rank 0 had written epoch 2's checkpoint before."""
        def on_batch_end(self, batch, logs=None):
            if self.model.epochs_trained == 2 and batch == 0 and RANK == 1:
                os.kill(os.getpid(), sig)
    model = net(3)
    model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=6, batch_size=256, l2=0.05,
              verbose=0, distributed=True,
              callbacks=[Die(), fd.ModelCheckpoint(os.path.join(OUT, "fault_ck.npz"),
                                                   monitor="loss")])


def check_error():
    """An exception on rank 1 only (rank 0 is fine): it is printed with the rank and the job
    is aborted, instead of rank 0 waiting for rank 1 until its timeout."""
    X, y = spirals()

    class Boom(fd.Callback):
        def on_batch_end(self, batch, logs=None):
            if RANK == 1 and batch == 2:
                raise OSError("the disk of host 2 is gone")
    net(3).fit(X, y, epochs=3, batch_size=128, verbose=0, distributed=True, callbacks=[Boom()])


def check_resume():
    """This process alone (one rank) resumes the 2-rank checkpoint to epoch 4; the reference
    is an uninterrupted one-process run of 4 epochs."""
    X, y = spirals()
    ref = net(3)
    ref.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=4, batch_size=256, l2=0.05,
            verbose=0)
    model = net(99)
    model.fit(X, y, epochs=4, batch_size=256, l2=0.05, verbose=0, distributed=True,
              resume_from=os.path.join(OUT, "fault_ck.npz"))
    save("resume", params=model.params.snapshot(), ref=ref.params.snapshot(),
         epochs=np.array([model.epochs_trained, ref.epochs_trained, SIZE]))


class _StepHook(fd.Callback):
    """A batch callback on every rank (keeps the runs on the step path); on rank ``rank``
    it sends SIGTERM to its own process after update ``at``."""

    def __init__(self, at=None, rank=1):
        self.at, self.rank = at, rank

    def on_batch_end(self, batch, logs=None):
        if self.model.steps_trained == self.at and RANK == self.rank:
            os.kill(os.getpid(), signal.SIGTERM)


def _preempt_case(name, X, y, make, at):
    """Unbroken 2-rank run; the same run preempted by a SIGTERM that reaches rank 1 only after
    step ``at``; a 2-rank resume from rank 0's checkpoint. Returns what the test asserts."""
    fit = lambda model, cbs, **kw: model.fit(X, y, epochs=4, batch_size=256, l2=0.01,
                                             verbose=0, distributed=True, callbacks=cbs, **kw)
    ref = make()
    fit(ref, [_StepHook(), fd.EarlyStopping(monitor="loss", patience=9)],
        optimizer=fd.optim.Adam(lr=0.01))
    ck = os.path.join(OUT, f"{name}_ck_rank{RANK}.npz")       # only rank 0 may write it
    model = make()
    try:
        fit(model, [_StepHook(at), fd.EarlyStopping(monitor="loss", patience=9),
                    fd.ModelCheckpoint(ck)], optimizer=fd.optim.Adam(lr=0.01))
        stop = [-1, -1, -1]
    except fd.Preempted as e:
        stop = [e.step, e.epoch, e.batch]
    barrier()
    resumed = make()
    fit(resumed, [_StepHook(), fd.EarlyStopping(monitor="loss", patience=9)],
        resume_from=os.path.join(OUT, f"{name}_ck_rank0.npz"))
    return {f"{name}_stop": np.array(stop), f"{name}_ref": ref.params.snapshot(),
            f"{name}_resumed": resumed.params.snapshot(),
            f"{name}_steps": np.array([model.steps_trained, resumed.steps_trained,
                                       ref.steps_trained]),
            f"{name}_loss": np.array(resumed.history.history["loss"]),
            f"{name}_loss_ref": np.array(ref.history.history["loss"])}


def check_preempt():
    """Preemption under MPI (issue 19): rank 1 alone receives SIGTERM after step 6 (epoch 2,
    batch 2 of 1001 rows / 256); its flag rides in step 7's gradient allreduce, so both ranks
    stop after step 7; rank 0 alone writes the checkpoint; resumed with 2 ranks the run ends
    with the unbroken 2-rank run's bits. In memory and streamed from .npy (dropout on)."""
    X, y = spirals()
    make = lambda: net(3, [fd.Dense(16, activation="tanh"), fd.Dropout(keep_prob=0.9),
                           fd.Dense(8, activation="relu"), fd.Dense(3, activation="softmax")])
    out = _preempt_case("memory", X, y, make, at=6)
    px, py = os.path.join(OUT, "pX.npy"), os.path.join(OUT, "py.npy")
    if RANK == 0:
        np.save(px, X)
        np.save(py, y)
    barrier()
    fd.config.STREAM_BLOCK_BYTES = 16 * 37      # 37 rows of 2 float64 per block
    fd.config.STREAM_BUFFER_BLOCKS = 3
    out.update(_preempt_case("stream", px, py, make, at=9))
    save("preempt", **out)


if __name__ == "__main__":
    for check in sys.argv[2:]:
        globals()[f"check_{check}"]()
