"""Mini-batches: where ``fit``'s step path gets its rows from.

A data source yields, for one epoch, ``(batch_index, workspace, rows)`` with the batch's rows
already in ``workspace.Xb`` / ``workspace.Yb`` (the model's reused buffers). Two sources:

``ArraySource`` (X and y in memory)
    The epoch's order is one permutation of all rows, ``epoch_order(seed, epoch, m)``; each
    batch is gathered from it with the backend's ``gather_rows`` kernel. This is the
    behaviour ``fit`` always had (same batches, bit-identical results).

``CSRSource`` (a scipy.sparse X in memory, ``data/sparse.py``)
    The same order and batches as ``ArraySource``; a batch is the CSR rows of its examples,
    gathered (``gather_csr_rows``) into index/data buffers sized once for the longest
    possible batch and reused, and handed to the model as ``ws.Xb`` (a ``CSRRows``).

``StreamSource`` (X given as a ``.npy`` path or an ``np.memmap``; y a path, memmap or array)
    Out of core, with bounded memory. Rows are split into contiguous blocks of about
    ``config.STREAM_BLOCK_BYTES``; an epoch visits the blocks in a shuffled order, groups of
    ``config.STREAM_BUFFER_BLOCKS`` consecutive blocks of that order fill an in-memory shuffle
    buffer, and batches are drawn from the buffer through a permutation of its rows (a batch
    may straddle two buffers). A background thread reads the next buffer (``os.preadv`` at the
    row's byte offset into reused arrays: nothing is memory-mapped, so RSS stays at the two
    buffers whatever the file size) while the current one is consumed. Block order and
    in-buffer permutations are pure functions of (seed, epoch): every example is used exactly
    once per epoch (``drop_last`` aside), and a resumed run sees the batches an uninterrupted
    one would. ``stream_order`` returns the resulting order, for inspection.

``StagedArraySource`` (X and y in memory on the host, cuda backend, ``config.CUDA_HOST_INPUT
== "overlap"``)
    X stays on the host; each batch is gathered there into pinned buffers and copied to the
    device on a second stream one batch ahead (``staged_batches``, ``kernels/cuda/_staging.py``),
    so the transfer of batch b + 1 overlaps the computation of batch b. Same batches as
    ``ArraySource``; it trains through the step path (the whole-epoch kernel needs X on the
    device). Streamed sources use the same staging on a device backend in that mode.

Why blocks (docs/design.md, measured): random row gathers from a memory-mapped ``.npy``
read 15-64x more bytes than they use, and every page read through a memory map stays in the
process's RSS. The shuffle is coarser than a full permutation (a batch comes from one buffer of
``STREAM_BUFFER_BLOCKS`` random blocks); shuffle the file once when it was written in a sorted
order (``make_teacher_npy`` writes i.i.d. rows).
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from types import SimpleNamespace

import numpy as np

from .. import config
from .._validation import as_targets
from .sparse import CSRRows

_SEED_TAG = 0x5EED


def epoch_order(seed, epoch, m, shuffle=True):
    """The example order of one epoch: a pure function of (seed, epoch), so a resumed run sees
    exactly the batches an uninterrupted one would."""
    if not shuffle:
        return np.arange(m, dtype=np.int64)
    return np.random.default_rng([seed, _SEED_TAG, epoch]).permutation(m).astype(np.int64)


def batch_sizes(m, batch_size, drop_last=False):
    """Rows of each batch of an epoch over ``m`` examples: full batches, then the last partial
    batch unless ``drop_last`` (when ``m < batch_size`` the single batch is kept)."""
    bs = min(int(batch_size), m)
    nb = m // bs if drop_last else (m + bs - 1) // bs
    return np.minimum(bs, m - np.arange(nb, dtype=np.int64) * bs)


def is_streamable(X) -> bool:
    """True when ``fit`` trains on X out of core: a ``.npy`` path or an ``np.memmap``."""
    return isinstance(X, (str, os.PathLike, np.memmap))


# ------------------------------------------------------------------------------- in memory
def host_input_mode() -> str:
    """``config.CUDA_HOST_INPUT``, checked: "upload" or "overlap"."""
    mode = config.CUDA_HOST_INPUT
    if mode not in ("upload", "overlap"):
        raise ValueError(f"fastdl.config.CUDA_HOST_INPUT={mode!r} is invalid; expected "
                         "'upload' or 'overlap'")
    return mode


def staged_batches(model, stager, sizes, fill, outs, start=0):
    """Batches of ``sizes`` rows through ``stager`` (``kernels/cuda/_staging.py``), one ahead:
    ``fill(b, host_arrays, n)`` writes batch b's n rows into the pinned host arrays (and may
    return the batch's weight sum, set as ``ws.wsum``), ``outs(ws)`` names the device arrays
    of the workspace the rows go to. Batch b + 1 is filled and its copy queued after the
    caller has queued batch b's step (the code after ``yield``), so both overlap that step.
    ``start``: the first batch (a run resumed inside the epoch)."""
    nb = len(sizes)

    def stage(b):
        slot = stager.acquire()
        slot.extra = fill(b, slot.host, sizes[b])
        stager.submit(slot, sizes[b])
        return slot

    slot = stage(start) if start < nb else None
    for b in range(start, nb):
        n = sizes[b]
        ws = model._workspace(n)
        stager.deliver(slot, outs(ws))
        if slot.extra is not None:
            ws.wsum = slot.extra
        yield b, ws, n
        if b + 1 < nb:
            slot = stage(b + 1)


class _Stagers:
    """The stagers of one source (one per batch shape), closed with the source."""

    def __init__(self, backend):
        self.backend, self.cache = backend, []

    def get(self, rows, arrays):
        widths = [a.shape[1] for a in arrays]
        dtypes = [a.dtype for a in arrays]
        for st in self.cache:
            if st.fits(rows, widths, dtypes):
                return st
        st = self.backend.k._stager(rows, widths, dtypes)
        self.cache.append(st)
        return st

    def close(self):
        for st in self.cache:
            st.close()
        self.cache = []


class ArraySource:
    """Validated, encoded in-memory X and Y (see the module docstring)."""

    streaming = False
    #: X and Y live on the backend: the whole-epoch kernel can train from them
    on_backend = True

    def __init__(self, Xc, Yc, backend):
        self.m = Xc.shape[0]
        self.backend = backend
        self.X, self.Y = backend.asarray(Xc), backend.asarray(Yc)
        self.W = None           # per-example weights (set_weights), gathered with the rows

    def set_weights(self, w):
        """Per-example weights ``w`` (m,), validated, in the model's dtype: each batch then also
        gathers its rows' weights into ``ws.Wb`` (``ws.wb`` its (mb,) view) and sets
        ``ws.wsum``, their float64 sum (the batch cost's denominator, see ``Sequential.fit``)."""
        self.w_host = np.asarray(w)
        self.W = self.backend.asarray(self.w_host.reshape(-1, 1))

    #: batches hold the rows in ``ws.X16`` (bfloat16) instead of ``ws.Xb`` (``gather_bf16``)
    fills_x16 = False

    def gather_bf16(self, model):
        """Mixed precision (``fastdl/precision.py``): fill the batches' bfloat16 ``ws.X16``
        instead of ``ws.Xb``, rounded once: a bfloat16 copy of all of X made here (when it
        takes at most ``config.BF16_INPUT_CACHE_BYTES``), then batches gather 2-byte rows;
        otherwise each batch is rounded as it is gathered (``gather_rows`` into uint16)."""
        self.fills_x16 = True
        self.X16 = None
        if self.X.size * 2 <= config.BF16_INPUT_CACHE_BYTES:
            X16 = self.backend.empty(self.X.shape, np.uint16)
            self.backend.k.to_bfloat16(X16, self.X)
            self.X16 = X16

    #: the whole-epoch fused kernel can train from this source (dense rows in ``self.X``)
    fusable = True
    #: the input kind of the batches (``Sequential._workspace``)
    kind = "dense"

    def order(self, seed, epoch, shuffle=True):
        return epoch_order(seed, epoch, self.m, shuffle)

    def _gather_x(self, ws, idx, bs):
        """The batch's rows of X into the workspace."""
        k = self.backend.k
        if not self.fills_x16:
            k.gather_rows(ws.Xb, self.X, idx)
        else:
            k.gather_rows(ws.X16, self.X if self.X16 is None else self.X16, idx)

    def batches(self, model, seed, epoch, batch_size, shuffle=True, drop_last=False, start=0):
        """``(batch, workspace, rows)`` for the epoch's batches ``start``, ``start + 1``, ...
        (``start`` > 0: a run resumed inside the epoch; the earlier batches are not read)."""
        bk = self.backend
        k = bk.k
        bs = min(int(batch_size), self.m)
        order = self.order(seed, epoch, shuffle)
        order_d = bk.asarray(order)
        for b, mb in enumerate(batch_sizes(self.m, bs, drop_last).tolist()):
            if b < start:
                continue
            idx = order_d[b * bs:b * bs + mb]
            ws = model._workspace(mb, self.kind)
            self._gather_x(ws, idx, bs)
            k.gather_rows(ws.Yb, self.Y, idx)
            if self.W is not None:
                k.gather_rows(model._batch_weights(ws), self.W, idx)
                ws.wsum = float(self.w_host[order[b * bs:b * bs + mb]].sum(dtype=np.float64))
            yield b, ws, mb

    def close(self):
        pass


class CSRSource(ArraySource):
    """In-memory sparse X (a validated ``CSRRows``) and encoded Y (module docstring)."""

    fusable = False
    kind = "csr"

    def __init__(self, Xc, Yc, backend):
        self.m = Xc.shape[0]
        self.backend = backend
        self.X, self.Y = Xc.to(backend), backend.asarray(Yc)
        self.W = None
        self._row_nnz = np.diff(Xc.indptr)          # host: sizes the batch buffers
        self._buffers = {}

    #: mixed precision: the sparse first layer reads float32 rows, no bfloat16 copy of X
    gather_bf16 = None

    def _buffer(self, bs):
        """Index/data buffers for batches of up to ``bs`` rows, sized once for the ``bs``
        longest rows of X (no batch of this epoch or any other can hold more entries)."""
        buf = self._buffers.get(bs)
        if buf is None:
            lengths = self._row_nnz
            if bs < lengths.shape[0]:
                cap = int(np.partition(lengths, lengths.shape[0] - bs)[-bs:].sum())
            else:
                cap = int(lengths.sum())
            bk, X = self.backend, self.X
            buf = self._buffers[bs] = (bk.empty((max(cap, 1),), X.data.dtype),
                                       bk.empty((max(cap, 1),), X.indices.dtype),
                                       bk.empty((bs + 1,), np.int64))
        return buf

    def _gather_x(self, ws, idx, bs):
        data, indices, indptr = self._buffer(bs)
        mb = idx.shape[0]
        X = self.X
        self.backend.k.gather_csr_rows(data, indices, indptr[:mb + 1], X.data, X.indices,
                                       X.indptr, idx)
        ws.Xb = CSRRows(data, indices, indptr[:mb + 1], (mb, X.shape[1]))

    def close(self):
        self._buffers = {}


class StagedArraySource:
    """In-memory host X and Y fed to a device backend through pinned staging buffers, one
    batch ahead (module docstring). ``X``, ``Y`` are uploaded whole only if something asks
    for them (``fastdl.distributed``'s sharded source gathers on the device)."""

    streaming = False
    on_backend = False

    def __init__(self, Xc, Yc, backend):
        self.m = Xc.shape[0]
        self.backend = backend
        self.Xh, self.Yh = Xc, Yc
        self.W = self.w_host = None
        self._dev = {}
        self._stagers = _Stagers(backend)
        from ..kernels.cpu import gather_rows   # jitted, parallel for large batches
        self._gather = gather_rows

    @property
    def X(self):
        if "X" not in self._dev:
            self._dev["X"] = self.backend.asarray(self.Xh)
        return self._dev["X"]

    @property
    def Y(self):
        if "Y" not in self._dev:
            self._dev["Y"] = self.backend.asarray(self.Yh)
        return self._dev["Y"]

    def set_weights(self, w):
        """As ``ArraySource.set_weights``; the weights stay on the host with X."""
        self.w_host = np.asarray(w)
        self.W = self.w_host.reshape(-1, 1)

    def order(self, seed, epoch, shuffle=True):
        return epoch_order(seed, epoch, self.m, shuffle)

    def batches(self, model, seed, epoch, batch_size, shuffle=True, drop_last=False, start=0):
        bs = min(int(batch_size), self.m)
        order = self.order(seed, epoch, shuffle)
        arrays = [self.Xh, self.Yh] + ([self.W] if self.W is not None else [])
        stager = self._stagers.get(bs, arrays)
        gather, w = self._gather, self.w_host

        def fill(b, host, n):
            idx = order[b * bs:b * bs + n]
            for h, a in zip(host, arrays):
                gather(h[:n], a, idx)
            return None if w is None else float(w[idx].sum(dtype=np.float64))

        def outs(ws):
            return [ws.Xb, ws.Yb] + ([model._batch_weights(ws)] if w is not None else [])
        yield from staged_batches(model, stager, batch_sizes(self.m, bs, drop_last).tolist(),
                                  fill, outs, start)

    def close(self):
        self._stagers.close()
        self._dev = {}


# ------------------------------------------------------------------------------- rows on disk
class _FileRows:
    """Rows of a C-ordered array stored at byte ``offset`` of a file, read with ``preadv``."""

    def __init__(self, name, path, offset, shape, dtype, what):
        self.name, self.path, self.offset = name, os.fspath(path), int(offset)
        self.shape, self.dtype, self.what = tuple(shape), np.dtype(dtype), what
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def open(self):
        return os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def read(self, fd, start, count, out):
        """Rows [start, start + count) into ``out`` (C-contiguous, this dtype)."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        want = count * self.row_bytes
        pos = self.offset + start * self.row_bytes
        done = 0
        while done < want:
            chunk = view[done:want]
            n = os.preadv(fd, [chunk], pos + done) if hasattr(os, "preadv") else \
                _pread_into(fd, chunk, pos + done)
            if n == 0:
                raise ValueError(f"{self.name} ({self.what}) is truncated: rows {start} to "
                                 f"{start + count - 1} lie past the end of the file")
            done += n

    def __repr__(self):
        return self.what


def _pread_into(fd, view, pos):
    """Fallback where os.preadv is missing (pread, or seek + read on Windows): one copy more.
    Each descriptor is used by one thread only, so seeking is safe."""
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), pos)
    else:
        os.lseek(fd, pos, os.SEEK_SET)
        data = os.read(fd, len(view))
    view[:len(data)] = data
    return len(data)


def _read_npy_header(path, name):
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}={os.fspath(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{name}={os.fspath(path)!r} is a directory; expected a .npy file") \
            from None
    except (ValueError, EOFError) as e:
        raise ValueError(f"{name}={os.fspath(path)!r} is not a readable .npy file ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{name}={os.fspath(path)!r} holds Python objects (dtype {dtype}); "
                         "expected a numeric array")
    if fortran and len(shape) > 1:
        raise ValueError(f"{name}={os.fspath(path)!r} is stored in Fortran order; out-of-core "
                         "training reads whole rows, so it needs a C-ordered file "
                         "(np.save(path, np.ascontiguousarray(X)))")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise ValueError(f"{name}={os.fspath(path)!r} is truncated: its header promises shape "
                         f"{shape} of {dtype} ({need} bytes) but the file has {size} bytes")
    return _FileRows(name, path, offset, shape, dtype, f"file {os.fspath(path)!r}")


def _memmap_rows(a, name):
    mm = getattr(a, "_mmap", None)
    if mm is None or a.filename is None:
        raise ValueError(f"{name} is an np.memmap without an open file; pass the .npy path")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} is a non-contiguous view of a memory map (strides "
                         f"{a.strides}); out-of-core training reads whole rows, so pass the "
                         ".npy path or a contiguous row range such as X[a:b]")
    if a.ndim == 0:
        raise ValueError(f"{name} is a 0-d memmap; expected rows of examples")
    # np.memmap maps the file from `offset` rounded down to the allocation granularity
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    base = np.frombuffer(mm, dtype=np.uint8)
    file_offset = start + (a.ctypes.data - base.ctypes.data)
    del base
    return _FileRows(name, a.filename, file_offset, a.shape, a.dtype,
                     f"memmap of {a.filename!r}")


def _rows_of(name, a):
    if isinstance(a, np.memmap):
        return _memmap_rows(a, name)
    path = os.fspath(a)
    if path.endswith(".npz"):
        raise ValueError(f"{name}={path!r} is a .npz file; out-of-core training streams dense "
                         ".npy files (np.save, fastdl make-data) or np.memmap arrays only. A "
                         "scipy.sparse matrix saved with scipy.sparse.save_npz trains in "
                         "memory (sparse rows are small): fit(scipy.sparse.load_npz(path), y)")
    if not path.endswith(".npy"):
        raise ValueError(f"{name}={path!r} is not a .npy file; out-of-core training reads .npy "
                         "files (np.save, fastdl make-data) or np.memmap arrays")
    return _read_npy_header(path, name)


def count_rows(name, a):
    """Rows of a .npy path or np.memmap (from its header; nothing is read)."""
    return int(_rows_of(name, a).shape[0])


def row_chunks(name, a, rows):
    """``(start, chunk)`` over a .npy path or np.memmap in order, ``rows`` rows at a time, read
    with ``preadv`` into one reused buffer (so memory stays at one chunk, whatever the file
    size; pages of a memory map are not touched). ``predict``/``evaluate`` use it."""
    reader = _rows_of(name, a)
    m = reader.shape[0]
    if m == 0:
        return
    buf = np.empty((min(rows, m),) + reader.shape[1:], reader.dtype)
    fd = reader.open()
    try:
        for start in range(0, m, rows):
            n = min(rows, m - start)
            reader.read(fd, start, n, buf[:n])
            yield start, buf[:n]
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- streaming
def stream_blocks(seed, epoch, n_blocks, shuffle=True):
    """The block visiting order of one epoch (a pure function of seed and epoch)."""
    if not shuffle:
        return np.arange(n_blocks, dtype=np.int64)
    rng = np.random.default_rng([seed, _SEED_TAG, epoch, 0])
    return rng.permutation(n_blocks).astype(np.int64)


def _buffer_permutation(seed, epoch, group, rows, shuffle=True):
    if not shuffle:
        return np.arange(rows, dtype=np.int64)
    rng = np.random.default_rng([seed, _SEED_TAG, epoch, group + 1])
    return rng.permutation(rows).astype(np.int64)


def _groups(m, block_rows, buffer_blocks, blocks):
    """[(group index, [(start row, rows), ...])] for one epoch's block order."""
    out = []
    for g, s in enumerate(range(0, blocks.shape[0], buffer_blocks)):
        out.append((g, [(int(b) * block_rows, min(block_rows, m - int(b) * block_rows))
                        for b in blocks[s:s + buffer_blocks]]))
    return out


def stream_order(seed, epoch, m, block_rows, buffer_blocks, shuffle=True):
    """The example order ``StreamSource`` produces for one epoch (row indices, all of them)."""
    blocks = stream_blocks(seed, epoch, (m + block_rows - 1) // block_rows, shuffle)
    parts = []
    for g, spans in _groups(m, block_rows, buffer_blocks, blocks):
        rows = np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in spans])
        parts.append(rows[_buffer_permutation(seed, epoch, g, rows.shape[0], shuffle)])
    return np.concatenate(parts)


class Prefetch:
    """A background thread filling free host buffers, one job after another, in order.

    ``open_files()`` returns the file descriptors the thread reads with (closed when it ends);
    ``fill(buf, job, fds)`` fills one buffer for one job. The consumer takes filled buffers
    with :meth:`next` (an exception in the thread is raised there) and hands them back with
    :meth:`release`. Used by :class:`StreamSource` (a job: a group of blocks) and by
    ``fastdl.distributed``'s sharded stream (a job: a chunk of this rank's rows)."""

    def __init__(self, buffers, open_files, jobs, fill, name="fastdl-prefetch"):
        self._free, self._ready = queue.Queue(), queue.Queue()
        for buf in buffers:
            self._free.put(buf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True,
                                        args=(open_files, jobs, fill))
        self._thread.start()

    def _run(self, open_files, jobs, fill):
        fds = []
        try:
            fds = open_files()
            for job in jobs:
                buf = self._free.get()
                if buf is None or self._stop.is_set():
                    return
                fill(buf, job, fds)
                self._ready.put(buf)
        except BaseException as e:          # handed to the consumer, raised there
            self._ready.put(e)
        finally:
            for fd in fds:
                os.close(fd)

    def next(self):
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, buf):
        self._free.put(buf)

    def close(self):
        self._stop.set()
        self._free.put(None)
        self._thread.join()


class StreamSource:
    """X from a ``.npy`` file or ``np.memmap``, read in shuffled blocks (module docstring).

    ``y``: a ``.npy`` path or memmap (streamed with X, same rows) or an in-memory array.
    Labels are validated once up front (a pass over y in chunks); X rows are checked for NaN
    and inf the first time each block is read in this ``fit``.
    """

    streaming = True
    on_backend = False

    def __init__(self, model, X, y, block_bytes=None, buffer_blocks=None):
        self.model = model
        self.backend = model._bk
        self.xr = _rows_of("X", X)
        xr = self.xr
        if len(xr.shape) != 2:
            raise ValueError(f"X ({xr.what}) has shape {xr.shape}; expected a 2-D array "
                             "(n_examples, n_features)")
        if not (np.issubdtype(xr.dtype, np.number) or xr.dtype == np.bool_) \
                or np.issubdtype(xr.dtype, np.complexfloating):
            raise TypeError(f"X ({xr.what}) has dtype {xr.dtype}; expected real numbers")
        self.m = xr.shape[0]
        if self.m == 0:
            raise ValueError(f"X ({xr.what}) is empty (shape {xr.shape}); expected at least one "
                             "example")
        if xr.shape[1] != model.input_dim:
            raise ValueError(f"X ({xr.what}) has {xr.shape[1]} features (shape {xr.shape}); the "
                             f"model expects {model.input_dim}")
        if y is None:
            raise ValueError("y is None; expected labels (a .npy path, np.memmap or array) with "
                             f"one row per example of X ({xr.what})")
        if is_streamable(y):
            self.yr, self.y_mem = _rows_of("y", y), None
            y_shape, y_what = self.yr.shape, self.yr.what
        else:
            self.yr, self.y_mem = None, as_targets("y", y)
            y_shape, y_what = self.y_mem.shape, "in memory"
        if len(y_shape) not in (1, 2):
            raise ValueError(f"y ({y_what}) has shape {y_shape}; expected (n_examples,) or "
                             "(n_examples, n_outputs)")
        if y_shape[0] != self.m:
            raise ValueError(f"X ({xr.what}) has {self.m} rows but y ({y_what}) has "
                             f"{y_shape[0]}; expected one label per example")
        block_bytes = config.STREAM_BLOCK_BYTES if block_bytes is None else int(block_bytes)
        self.block_rows = int(min(self.m, max(1, block_bytes // max(xr.row_bytes, 1))))
        self.buffer_blocks = int(max(1, config.STREAM_BUFFER_BLOCKS if buffer_blocks is None
                                     else buffer_blocks))
        self.n_blocks = (self.m + self.block_rows - 1) // self.block_rows
        self._check_labels()
        self._buffers = None
        self._checked = np.zeros(self.n_blocks, dtype=bool)
        self._staging = {}
        self._stagers = _Stagers(self.backend)

    # -- validation ------------------------------------------------------------------------
    def _encode(self, yraw, start):
        model = self.model
        name = f"y[{start}:{start + yraw.shape[0]}]"
        return model.loss.encode(as_targets(name, yraw), model.output_dim, model.dtype, name)

    def _check_labels(self):
        rows = max(self.block_rows, 65536)
        fds = self._open()
        try:
            for s in range(0, self.m, rows):
                n = min(rows, self.m - s)
                self._encode(self._read_y(fds, s, n, None), s)
        finally:
            for fd in fds:
                os.close(fd)

    # -- reading ---------------------------------------------------------------------------
    def _open(self):
        fds = [self.xr.open()]
        if self.yr is not None:
            fds.append(self.yr.open())
        return fds

    def _read_y(self, fds, start, count, out):
        if self.yr is None:
            return self.y_mem[start:start + count]
        if out is None:
            out = np.empty((count,) + self.yr.shape[1:], self.yr.dtype)
        self.yr.read(fds[1], start, count, out[:count])
        return out[:count]

    def _allocate(self):
        model, xr = self.model, self.xr
        rows = self.block_rows * self.buffer_blocks
        bufs = []
        for _ in range(2):
            buf = SimpleNamespace(X=np.empty((rows, model.input_dim), model.dtype),
                                  Y=np.empty((rows, model.output_dim), model.dtype),
                                  rows=0, perm=None)
            bufs.append(buf)
        self._direct = xr.dtype == model.dtype
        self._raw_x = None if self._direct else np.empty((self.block_rows, xr.shape[1]),
                                                         xr.dtype)
        self._raw_y = None if self.yr is None else \
            np.empty((self.block_rows,) + self.yr.shape[1:], self.yr.dtype)
        self._buffers = bufs

    def _fill(self, buf, spans, fds):
        off = 0
        xr = self.xr
        for start, n in spans:
            dst = buf.X[off:off + n]
            if self._direct:
                xr.read(fds[0], start, n, dst)
            else:
                xr.read(fds[0], start, n, self._raw_x[:n])
                dst[...] = self._raw_x[:n]
            blk = start // self.block_rows
            if not self._checked[blk]:
                if not np.isfinite(dst).all():
                    bad = int(dst.size - np.count_nonzero(np.isfinite(dst)))
                    raise ValueError(f"X ({xr.what}) contains {bad} NaN or infinite value(s) "
                                     f"in rows {start} to {start + n - 1}; expected finite "
                                     "numbers")
                self._checked[blk] = True
            buf.Y[off:off + n] = self._encode(self._read_y(fds, start, n, self._raw_y), start)
            off += n
        buf.rows = off

    # -- the epoch -------------------------------------------------------------------------
    def order(self, seed, epoch, shuffle=True):
        return stream_order(seed, epoch, self.m, self.block_rows, self.buffer_blocks, shuffle)

    def batches(self, model, seed, epoch, batch_size, shuffle=True, drop_last=False, start=0):
        """As ``ArraySource.batches``; from batch ``start`` the reading begins with the shuffle
        buffer that holds its first row (the buffers before it are not read)."""
        if self._buffers is None:
            self._allocate()
        blocks = stream_blocks(seed, epoch, self.n_blocks, shuffle)
        groups = _groups(self.m, self.block_rows, self.buffer_blocks, blocks)
        bs = min(int(batch_size), self.m)
        skip = start * bs                   # rows of the order consumed before batch start
        while groups and skip >= sum(n for _, n in groups[0][1]):
            skip -= sum(n for _, n in groups[0][1])
            groups = groups[1:]

        def fill(buf, job, fds):
            g, spans = job
            self._fill(buf, spans, fds)
            buf.perm = _buffer_permutation(seed, epoch, g, buf.rows, shuffle)
        prefetch = Prefetch(self._buffers, self._open, groups, fill)
        reader = ChunkReader(prefetch, self.backend, self._staging, skip=skip)
        sizes = batch_sizes(self.m, bs, drop_last).tolist()
        try:
            if self.backend.on_device and host_input_mode() == "overlap":
                shapes = [np.empty((0, model.input_dim), model.dtype),
                          np.empty((0, model.output_dim), model.dtype)]
                stager = self._stagers.get(bs, shapes)
                yield from staged_batches(
                    model, stager, sizes,
                    lambda b, host, n: reader.read_into(model, host[0], host[1], n),
                    lambda ws: [ws.Xb, ws.Yb], start)
                return
            for b, mb in enumerate(sizes):
                if b < start:
                    continue
                ws = model._workspace(mb)
                reader.fill(model, ws, mb)
                yield b, ws, mb
        finally:
            prefetch.close()

    def close(self):
        """Free the shuffle and staging buffers (``fit`` calls this at the end)."""
        self._buffers = None
        self._staging = {}
        self._stagers.close()

    def __repr__(self):
        return (f"StreamSource({self.xr.what}, m={self.m}, block_rows={self.block_rows}, "
                f"buffer_blocks={self.buffer_blocks})")


class ChunkReader:
    """Fills mini-batches, in order, from a prefetcher's chunks of shuffled rows.

    ``prefetch.next()`` returns a host chunk with ``rows``, ``perm`` (the order to take its rows
    in), ``X`` and ``Y``; ``prefetch.release(chunk)`` hands it back for refilling. A batch may
    span two chunks. Shared by :class:`StreamSource` and ``fastdl.distributed``'s sharded
    stream, which differ only in which rows their chunks hold. On a device backend the rows
    are gathered into host staging buffers (one pair per batch size, kept in ``staging``) and
    copied to the workspace in one transfer per array (or, with ``read_into``, into the pinned
    buffers of ``staged_batches``). Streamed rows are standardized here, on the host, when the
    model has a standardizer (in-memory inputs were standardized once, by ``model._X``)."""

    def __init__(self, prefetch, backend, staging, skip=0):
        self.prefetch, self.staging = prefetch, staging
        self.on_device = backend.on_device
        self.gather = (lambda out, X, idx: np.take(X, idx, axis=0, out=out)) \
            if self.on_device else backend.k.gather_rows
        self.cur, self.pos = None, 0
        self.skip = int(skip)   # rows of the first chunk already used (a resumed epoch)

    def fill(self, model, ws, n):
        """Put the next ``n`` rows into the workspace's ``Xb``/``Yb``."""
        if self.on_device:
            st = self.staging.get(n)
            if st is None:
                st = self.staging[n] = (np.empty((n, model.input_dim), model.dtype),
                                        np.empty((n, model.output_dim), model.dtype))
            dX, dY = st
        else:
            dX, dY = ws.Xb, ws.Yb
        self.read_into(model, dX, dY, n)
        if self.on_device:
            ws.Xb.copy_to_device(dX)
            ws.Yb.copy_to_device(dY)

    def read_into(self, model, dX, dY, n):
        """The next ``n`` rows into the host arrays ``dX[:n]``, ``dY[:n]``, standardized."""
        filled = 0
        while filled < n:
            cur = self.cur
            if cur is None or self.pos == cur.rows:
                if cur is not None:
                    self.prefetch.release(cur)
                cur, self.pos = self.prefetch.next(), self.skip
                self.cur, self.skip = cur, 0
            take = min(n - filled, cur.rows - self.pos)
            idx = cur.perm[self.pos:self.pos + take]
            self.gather(dX[filled:filled + take], cur.X, idx)
            self.gather(dY[filled:filled + take], cur.Y, idx)
            filled += take
            self.pos += take
        std = model.standardizer
        if std is not None:
            std._transform_inplace(dX[:n])


def make_source(model, X, y):
    """The data source ``fit`` trains from: streamed when X is a .npy path or np.memmap; a
    sparse X (``data/sparse.py``) in memory, by CSR rows."""
    if is_streamable(X):
        return StreamSource(model, X, y)
    if is_streamable(y):
        y = np.load(os.fspath(y), mmap_mode=None, allow_pickle=False) \
            if not isinstance(y, np.memmap) else np.asarray(y)
    Xc, Yc = model._XY(X, y)
    bk = model._bk
    if isinstance(Xc, CSRRows):
        return CSRSource(Xc, Yc, bk)
    if bk.on_device and isinstance(Xc, np.ndarray) and host_input_mode() == "overlap":
        return StagedArraySource(Xc, Yc, bk)
    return ArraySource(Xc, Yc, bk)
