"""Host -> device input staging: pinned buffers, a copy stream and events, one batch ahead.

Used by ``fastdl/data/batches.py`` when ``config.CUDA_HOST_INPUT == "overlap"``: a batch's rows
are written by the host into pinned (page-locked) buffers and copied to the device
asynchronously on a second stream while the GPU computes the previous batch. Without this, a
copy from pageable memory blocks the host until the GPU has finished the work queued before it,
so reading, gathering and copying a batch and computing the previous one never overlap.

Two slots s = 0, 1 rotate; each has pinned host buffers P_s, device buffers D_s and two events.
The compute stream is the legacy default stream (every fastdl kernel and CuPy's cuBLAS calls
run there); the copy stream is created non-blocking, so nothing orders it against the default
stream except these events:

    acquire   host:    copied_s.synchronize()        P_s no longer read by its last copy
              host:    writes the batch into P_s
    submit    copy:    wait(consumed_s)               D_s no longer read by its last delivery
              copy:    D_s <- P_s (async)             record(copied_s)
    deliver   default: wait(copied_s)                 the rows have arrived
              default: ws <- D_s (device to device)   record(consumed_s)

so the host never writes a pinned buffer a copy may still read, a copy never overwrites a
device buffer the default stream has not yet read, and the default stream never reads rows
before they arrived. The training loop queues batch b's step after ``deliver(b)`` and then
acquires and submits batch b + 1: the host's reading and gathering and the copy engine's
transfer of batch b + 1 run while the GPU computes batch b. Events never recorded are
complete, so the first use of a slot waits for nothing. ``close`` waits for every copy and
delivery, so buffers are freed only when idle.

Verified: under the CUDA simulator (which runs every stream synchronously) the data path is
exact, and ``tests/test_input_staging.py`` runs this protocol against a model of CUDA's stream
semantics that delays every queued operation as long as it may (a missing wait there corrupts
batches, and the test proves it does). Not verified without a GPU: that the copy stream is
really non-blocking and the copies really asynchronous (``benchmarks/gpu_check.py``'s
``overlap`` section checks both and times it).
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import cuda

from ._device import in_simulator

#: Slots in rotation: one batch being computed, one being filled and copied.
SLOTS = 2


def copy_stream():
    """A stream that does not synchronize with the legacy default stream (created with
    ``CU_STREAM_NON_BLOCKING``, as numba's ``Context.create_stream`` creates its blocking
    ones). The simulator's streams are synchronous: its plain stream stands in for it."""
    if in_simulator():
        return cuda.stream()
    try:
        from numba.cuda.cudadrv import driver as drv
        ctx = cuda.current_context()
        flags = drv.binding.CUstream_flags.CU_STREAM_NON_BLOCKING.value
        handle = drv.driver.cuStreamCreate(flags)
        return drv.Stream(handle, finalizer=drv._stream_finalizer(ctx.deallocations, handle))
    except Exception as e:  # numba-cuda moved its internals: still correct, without overlap
        warnings.warn(f"fastdl: could not create a non-blocking CUDA stream ({type(e).__name__}: "
                      f"{e}); host input copies will serialize with the compute stream",
                      RuntimeWarning, stacklevel=2)
        return cuda.stream()


class NumbaOps:
    """The numba.cuda calls the stager makes; ``tests/test_input_staging.py`` substitutes a
    model of CUDA's stream semantics. ``0`` is the legacy default stream."""

    def pinned(self, shape, dtype):
        return cuda.pinned_array(shape, dtype=np.dtype(dtype))

    def device(self, shape, dtype):
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def stream(self):
        return copy_stream()

    def event(self):
        # timing off: cheaper records; the simulator's events take no arguments
        return cuda.event() if in_simulator() else cuda.event(timing=False)

    def h2d(self, dst, src, stream):
        dst.copy_to_device(src, stream=stream)

    def d2d(self, dst, src):
        dst.copy_to_device(src)          # on the default stream

    def record(self, event, stream):
        event.record(stream)

    def wait(self, event, stream):
        event.wait(stream)

    def host_wait(self, event):
        event.synchronize()

    def stream_sync(self, stream):
        stream.synchronize()


class Slot:
    def __init__(self, ops, widths, rows, dtypes):
        self.host = [ops.pinned((rows, w), dt) for w, dt in zip(widths, dtypes)]
        self.dev = [ops.device((rows, w), dt) for w, dt in zip(widths, dtypes)]
        self.copied, self.consumed = ops.event(), ops.event()
        self.rows = 0           # rows submitted
        self.extra = None       # what the filler returned for this batch (e.g. a weight sum)


class Stager:
    """Double-buffered host -> device staging of batches of up to ``rows`` rows of arrays of
    ``widths`` columns and ``dtypes`` (module docstring for the protocol)."""

    def __init__(self, rows, widths, dtypes, ops=None, slots=SLOTS):
        self.ops = NumbaOps() if ops is None else ops
        self.rows = int(rows)
        self.widths, self.dtypes = tuple(widths), tuple(np.dtype(d) for d in dtypes)
        self.slots = [Slot(self.ops, self.widths, self.rows, self.dtypes) for _ in range(slots)]
        self.stream = self.ops.stream()
        self._next = 0

    def fits(self, rows, widths, dtypes):
        return (rows <= self.rows and tuple(widths) == self.widths
                and tuple(np.dtype(d) for d in dtypes) == self.dtypes)

    def acquire(self):
        """The next slot, once its pinned buffers are free (``slot.host``: write there)."""
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        self.ops.host_wait(slot.copied)
        return slot

    def submit(self, slot, n):
        """Queue the copy of the first ``n`` rows of ``slot.host`` to the device."""
        ops, s = self.ops, self.stream
        ops.wait(slot.consumed, s)
        for h, d in zip(slot.host, slot.dev):
            if n:
                ops.h2d(d[:n], h[:n], s)
        ops.record(slot.copied, s)
        slot.rows = n

    def deliver(self, slot, outs):
        """Queue, on the default stream, the copy of the slot's rows into ``outs`` (device
        arrays of ``slot.rows`` rows, e.g. a workspace's ``Xb``, ``Yb``)."""
        ops, n = self.ops, slot.rows
        ops.wait(slot.copied, 0)
        for d, out in zip(slot.dev, outs):
            if n:
                ops.d2d(out[:n], d[:n])
        ops.record(slot.consumed, 0)

    def close(self):
        """Wait until no copy or delivery uses the buffers (they may be freed afterwards)."""
        self.ops.stream_sync(self.stream)
        for slot in self.slots:
            self.ops.host_wait(slot.copied)
            self.ops.host_wait(slot.consumed)


def _stager(rows, widths, dtypes):
    """A :class:`Stager` on this device (the backend helper ``fastdl/data/batches.py`` uses)."""
    return Stager(rows, widths, dtypes)
