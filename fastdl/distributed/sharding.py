"""Sharding of the global mini-batches across ranks.

The rule (the same for in-memory and streamed data): every rank computes the epoch's global
example order exactly as a one-process ``fit`` would (``epoch_order`` for arrays,
``stream_order`` for ``.npy`` files: pure functions of (seed, epoch)), cuts it into the same
global batches (``batch_sizes``: full batches of ``batch_size`` rows, then the last partial one)
and takes **its contiguous slice of each global batch**: of a batch of ``mb`` rows over ``R``
ranks, rank ``r`` takes ``mb // R`` rows, plus one when ``r < mb % R`` (``np.array_split``'s
rule), starting at ``r * (mb // R) + min(r, mb % R)``. A rank may get 0 rows (a last batch
smaller than ``R``); it then contributes a zero gradient of weight 0.

So the union of the ranks' rows of step ``b`` is the one-process batch ``b``, whatever ``R``:
with each rank's mean gradient weighted by its share ``m_r / mb`` (``trainer.py``) the summed
gradient is the one-process gradient, and a checkpoint resumes with any number of ranks.

Out of core (``StreamSource``), each rank **reads only the rows of its slices** (never the
other ranks' rows): it takes the next chunk of its own row list, sorts it, coalesces
consecutive rows into runs, reads each run with one ``preadv`` into a buffer (a background
thread prefetches the next chunk) and gathers batches from it. The global order has the
stream's block locality (a batch comes from one shuffle buffer of
``config.STREAM_BUFFER_BLOCKS`` contiguous blocks), so a rank's chunk lies in a few blocks of
the file and its runs are short contiguous reads there. The batches are those of the
one-process streamed run, so a distributed streamed run ends with the parameters of the
in-memory distributed run fed the same order (and of the one-process streamed run, up to the
order of floating-point summation).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..data.batches import ChunkReader, Prefetch, batch_sizes


def shard_range(mb, size, rank):
    """(start, rows) of rank ``rank``'s slice of a global batch of ``mb`` rows."""
    base, extra = divmod(int(mb), int(size))
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


def shard_rows(order, sizes, bs, size, rank):
    """Rank ``rank``'s rows of one epoch (in consumption order) and its rows per batch."""
    parts, local = [], np.empty(sizes.shape[0], np.int64)
    for b, mb in enumerate(sizes.tolist()):
        lo, n = shard_range(mb, size, rank)
        parts.append(order[b * bs + lo:b * bs + lo + n])
        local[b] = n
    rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
    return rows, local


def _empty_workspace():
    """What a rank with no rows in a batch gets: ``m == 0``, no buffers (it computes no
    gradient; ``trainer.py`` zeroes its contribution)."""
    return SimpleNamespace(m=0, Xb=None, Yb=None)


class ShardedArraySource:
    """An ``ArraySource`` (every rank holds X in memory) yielding this rank's slice of each
    global batch: ``(batch, workspace with the rank's rows, global batch rows)``."""

    def __init__(self, source, size, rank):
        self.inner, self.size, self.rank = source, int(size), int(rank)
        self.m, self.streaming = source.m, False
        self.backend = source.backend

    def order(self, seed, epoch, shuffle=True):
        return self.inner.order(seed, epoch, shuffle)

    def batches(self, model, seed, epoch, batch_size, shuffle=True, drop_last=False, start=0):
        bk = self.backend
        bs = min(int(batch_size), self.m)
        sizes = batch_sizes(self.m, bs, drop_last)
        rows, local = shard_rows(self.order(seed, epoch, shuffle), sizes, bs, self.size,
                                 self.rank)
        rows_d = bk.asarray(rows)
        pos = int(local[:start].sum())          # this rank's rows of the batches before start
        for b, (mb, n) in enumerate(zip(sizes.tolist(), local.tolist())):
            if b < start:
                continue
            if n == 0:
                yield b, _empty_workspace(), mb
                continue
            ws = model._workspace(n)
            idx = rows_d[pos:pos + n]
            bk.k.gather_rows(ws.Xb, self.inner.X, idx)
            bk.k.gather_rows(ws.Yb, self.inner.Y, idx)
            pos += n
            yield b, ws, mb

    def close(self):
        self.inner.close()


class ShardedStreamSource:
    """A ``StreamSource`` of which this rank reads only its rows (module docstring)."""

    streaming = True

    def __init__(self, source, size, rank):
        self.inner, self.size, self.rank = source, int(size), int(rank)
        self.m, self.backend = source.m, source.backend
        # about one shuffle buffer of the one-process run, divided among the ranks
        self.chunk_rows = max(1, source.block_rows * source.buffer_blocks // self.size)
        self._buffers = None
        self._staging = {}

    def order(self, seed, epoch, shuffle=True):
        return self.inner.order(seed, epoch, shuffle)

    def _allocate(self, rows):
        model, xr = self.inner.model, self.inner.xr
        self._buffers = [SimpleNamespace(X=np.empty((rows, model.input_dim), model.dtype),
                                         Y=np.empty((rows, model.output_dim), model.dtype),
                                         rows=0, perm=None) for _ in range(2)]
        self._direct = xr.dtype == model.dtype
        self._raw_x = None if self._direct else np.empty((rows, xr.shape[1]), xr.dtype)
        yr = self.inner.yr
        self._raw_y = None if yr is None else np.empty((rows,) + yr.shape[1:], yr.dtype)
        self._cap = rows

    def _fill(self, buf, rows, fds):
        """``rows`` (file row indices, consumption order) into ``buf`` sorted by row, with
        ``buf.perm`` mapping consumption position -> buffer row."""
        inner, xr = self.inner, self.inner.xr
        n = rows.shape[0]
        srt = np.argsort(rows, kind="stable")
        sorted_rows = rows[srt]
        perm = np.empty(n, np.int64)
        perm[srt] = np.arange(n, dtype=np.int64)
        # runs of consecutive rows: one read each
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [n]))
        xdst = buf.X if self._direct else self._raw_x
        for s, e in zip(starts.tolist(), ends.tolist()):
            xr.read(fds[0], int(sorted_rows[s]), e - s, xdst[s:e])
            if inner.yr is not None:
                inner.yr.read(fds[1], int(sorted_rows[s]), e - s, self._raw_y[s:e])
        if not self._direct:
            buf.X[:n] = self._raw_x[:n]
        X = buf.X[:n]
        if not np.isfinite(X).all():
            bad = sorted_rows[~np.isfinite(X).all(axis=1)]
            raise ValueError(f"X ({xr.what}) contains NaN or infinite values in row(s) "
                             f"{bad[:5].tolist()}{' ...' if bad.shape[0] > 5 else ''}; "
                             "expected finite numbers")
        yraw = self._raw_y[:n] if inner.yr is not None else inner.y_mem[sorted_rows]
        buf.Y[:n] = inner._encode(yraw, int(sorted_rows[0]) if n else 0)
        buf.rows, buf.perm = n, perm

    def batches(self, model, seed, epoch, batch_size, shuffle=True, drop_last=False, start=0):
        bs = min(int(batch_size), self.m)
        sizes = batch_sizes(self.m, bs, drop_last)
        rows, local = shard_rows(self.order(seed, epoch, shuffle), sizes, bs, self.size,
                                 self.rank)
        rows = rows[int(local[:start].sum()):]   # a resumed epoch: from batch start on
        cap = max(self.chunk_rows, int(local.max()) if local.shape[0] else 1)
        if self._buffers is None or self._cap < cap:
            self._allocate(cap)
        chunks = [rows[s:s + self._cap] for s in range(0, rows.shape[0], self._cap)]
        prefetch = Prefetch(self._buffers, self.inner._open, chunks, self._fill,
                            name="fastdl-shard-prefetch")
        reader = ChunkReader(prefetch, self.backend, self._staging)
        try:
            for b, (mb, n) in enumerate(zip(sizes.tolist(), local.tolist())):
                if b < start:
                    continue
                if n == 0:
                    yield b, _empty_workspace(), mb
                    continue
                ws = model._workspace(n)
                reader.fill(model, ws, n)
                yield b, ws, mb
        finally:
            prefetch.close()

    def close(self):
        self._buffers = None
        self._staging = {}
        self.inner.close()


def shard_source(source, size, rank):
    """The sharded view of a ``make_source`` result for rank ``rank`` of ``size``."""
    if getattr(source, "streaming", False):
        return ShardedStreamSource(source, size, rank)
    return ShardedArraySource(source, size, rank)
