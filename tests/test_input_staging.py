"""The host -> device staging protocol (``kernels/cuda/_staging.py``) against a model of CUDA's
stream semantics, without a GPU.

The CUDA simulator runs every stream synchronously, so it cannot catch a missing wait. Here
``LazyCuda`` stands in for numba.cuda: every copy, event record and wait is queued on its
stream and runs only when something forces it (a host wait on an event, a stream sync) or
when a seeded scheduler picks a ready queue head at random; copies read their source when they
run, not when they are queued, as DMA does. A batch read too early, or a buffer overwritten
too soon, then shows up as wrong rows. The negative controls remove each of the protocol's
waits in turn and check that this model catches it (so the test can fail).
What it cannot show: that numba-cuda's calls have these semantics on a real GPU (a
non-blocking stream, truly asynchronous pinned copies); ``benchmarks/gpu_check.py`` checks that.
"""

from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

from fastdl.data.batches import StagedArraySource, batch_sizes, epoch_order, \
    staged_batches  # noqa: E402
from fastdl.kernels.cuda._staging import Stager  # noqa: E402


class Event:
    def __init__(self):
        self.recorded = 0      # records queued so far
        self.fired = 0         # records executed so far


class LazyCuda:
    """Queues per stream (0 is the default stream); ``eager``: the chance that each queue
    call also runs a few random ready operations."""

    def __init__(self, seed=0, eager=0.0):
        self.queues = {0: deque()}
        self.rng = np.random.default_rng(seed)
        self.eager = eager

    # allocation
    def pinned(self, shape, dtype):
        return np.full(shape, np.nan, dtype)

    def device(self, shape, dtype):
        return np.full(shape, np.nan, dtype)

    def stream(self):
        s = object()
        self.queues[s] = deque()
        return s

    def event(self):
        return Event()

    # queued work
    def _queue(self, stream, op, ready=lambda: True):
        self.queues[stream].append((ready, op))
        if self.rng.random() < self.eager:
            for _ in range(int(self.rng.integers(1, 4))):
                self._step()

    def h2d(self, dst, src, stream):
        self._queue(stream, lambda: np.copyto(dst, src))

    def d2d(self, dst, src):
        self._queue(0, lambda: np.copyto(dst, src))

    def record(self, ev, stream):
        ev.recorded += 1
        g = ev.recorded
        self._queue(stream, lambda: setattr(ev, "fired", max(ev.fired, g)))

    def wait(self, ev, stream):
        g = ev.recorded
        self._queue(stream, lambda: None, ready=lambda: ev.fired >= g)

    def launch(self, op):
        """A kernel on the default stream (the training step reading the batch)."""
        self._queue(0, op)

    # host synchronization
    def host_wait(self, ev):
        g = ev.recorded
        self._run_until(lambda: ev.fired >= g)

    def stream_sync(self, stream):
        self._run_until(lambda: not self.queues[stream])

    def drain(self):
        self._run_until(lambda: not any(self.queues.values()))

    def _ready(self):
        return [q for q in self.queues.values() if q and q[0][0]()]

    def _step(self):
        ready = self._ready()
        if not ready:
            return False
        q = ready[int(self.rng.integers(len(ready)))]
        q.popleft()[1]()
        return True

    def _run_until(self, done):
        while not done():
            if not self._step():
                raise AssertionError("deadlock: nothing can run and the wait never ends")


class FakeModel:
    def __init__(self, n_in, n_out, dtype=np.float64):
        self.n_in, self.n_out, self.dtype, self.ws = n_in, n_out, dtype, {}

    def _workspace(self, m):
        if m not in self.ws:
            self.ws[m] = SimpleNamespace(m=m, Xb=np.full((m, self.n_in), np.nan),
                                         Yb=np.full((m, self.n_out), np.nan), Wb=None)
        return self.ws[m]

    def _batch_weights(self, ws):
        if ws.Wb is None:
            ws.Wb = np.full((ws.m, 1), np.nan)
        return ws.Wb


def _run(ops, sizes, stager_cls=Stager, epochs=2):
    """Every epoch's batches through the stager; the 'step' reads the batch on the default
    stream when the model lets it run. Returns [(epoch, batch, X seen, Y seen)]."""
    model = FakeModel(3, 2)
    stager = stager_cls(max(sizes), (3, 2), (np.float64, np.float64), ops=ops)
    seen = []
    for e in range(epochs):
        def fill(b, host, n, e=e):
            host[0][:n] = (e * 100 + b) * 1000 + np.arange(n * 3).reshape(n, 3)
            host[1][:n] = -(e * 100 + b)

        for b, ws, n in staged_batches(model, stager, sizes, fill, lambda ws: [ws.Xb, ws.Yb]):
            ops.launch(lambda ws=ws, b=b, e=e: seen.append((e, b, ws.Xb.copy(), ws.Yb.copy())))
    stager.close()
    assert all(not q for s, q in ops.queues.items() if s != 0)   # close waited for the copies
    ops.drain()
    return seen


def _correct(seen, sizes, epochs=2):
    if len(seen) != epochs * len(sizes):
        return False
    for (e, b, X, Y), (e2, b2) in zip(seen, [(e, b) for e in range(epochs)
                                              for b in range(len(sizes))]):
        n = sizes[b]
        want = (e * 100 + b) * 1000 + np.arange(n * 3).reshape(n, 3)
        if (e, b) != (e2, b2) or not np.array_equal(X, want) or not (Y == -(e * 100 + b)).all():
            return False
    return True


SIZES = ([4, 4, 4, 4, 4, 2], [5], [3, 3], [2, 2, 2, 1])


@pytest.mark.parametrize("eager", (0.0, 0.3, 1.0))
@pytest.mark.parametrize("sizes", SIZES, ids=("6b", "1b", "2b", "4b"))
def test_protocol_delivers_every_batch_intact(sizes, eager):
    for seed in range(12):
        assert _correct(_run(LazyCuda(seed, eager), sizes), sizes), seed


class NoHostWait(Stager):          # the host overwrites pinned buffers still being copied
    def acquire(self):
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        return slot


class NoConsumedWait(Stager):      # a copy overwrites device rows not yet delivered
    def submit(self, slot, n):
        for h, d in zip(slot.host, slot.dev):
            self.ops.h2d(d[:n], h[:n], self.stream)
        self.ops.record(slot.copied, self.stream)
        slot.rows = n


class NoCopiedWait(Stager):        # the default stream reads rows before they arrived
    def deliver(self, slot, outs):
        for d, out in zip(slot.dev, outs):
            self.ops.d2d(out[:slot.rows], d[:slot.rows])
        self.ops.record(slot.consumed, 0)


@pytest.mark.parametrize("broken", (NoHostWait, NoConsumedWait, NoCopiedWait))
def test_each_wait_is_needed(broken):
    sizes = SIZES[0]
    caught = sum(not _correct(_run(LazyCuda(seed, eager), sizes, broken), sizes)
                 for seed in range(12) for eager in (0.0, 0.3))
    assert caught > 0, f"{broken.__name__}: the stream model did not catch the missing wait"


def test_staged_array_source_gathers_the_epochs_batches():
    """StagedArraySource: batch b holds rows order[b bs: (b+1) bs] of X, Y and the weights,
    and ws.wsum their weight sum, as ArraySource gathers them."""
    ops = LazyCuda(3, 0.3)
    bk = SimpleNamespace(on_device=True, k=SimpleNamespace(
        _stager=lambda rows, widths, dtypes: Stager(rows, widths, dtypes, ops=ops)))
    rng = np.random.default_rng(0)
    m, bs = 23, 5
    X, Y = rng.standard_normal((m, 3)), rng.standard_normal((m, 2))
    w = rng.random(m)
    src = StagedArraySource(X, Y, bk)
    src.set_weights(w)
    model = FakeModel(3, 2)
    seen = []
    for epoch in range(2):
        for b, ws, n in src.batches(model, 7, epoch, bs):
            ops.launch(lambda ws=ws, b=b, e=epoch, s=ws.wsum: seen.append(
                (e, b, ws.Xb.copy(), ws.Yb.copy(), ws.Wb.copy(), s)))
    src.close()
    ops.drain()
    assert len(seen) == 2 * 5
    for e, b, Xs, Ys, Ws, wsum in seen:
        idx = epoch_order(7, e, m)[b * bs:(b + 1) * bs]
        assert Xs.shape[0] == batch_sizes(m, bs)[b]
        np.testing.assert_array_equal(Xs, X[idx])
        np.testing.assert_array_equal(Ys, Y[idx])
        np.testing.assert_array_equal(Ws[:, 0], w[idx])
        assert wsum == float(w[idx].sum(dtype=np.float64))
