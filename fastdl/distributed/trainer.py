"""Data-parallel ``fit``: what every rank does around the one-process training loop.

``model.fit(..., distributed=True)`` (or ``distributed=fd.distributed.DataParallel(...)``) runs
the ordinary loop of ``fastdl/train/loop.py`` on every rank with :class:`DataParallel` as its
strategy (the hooks of ``fastdl/train/strategy.py``), which adds four things:

1. **Start** (:meth:`DataParallel.setup`): the ranks check that they agree on the run (rows,
   batch size, epochs, L2, parameter count, counters: a mismatch is a ``DistributedError``
   naming the field), then rank 0's seed, parameters and batch-norm running statistics are
   broadcast (its standardizer, fitted by rank 0 alone, was broadcast before any data were
   read: :meth:`DataParallel.fit_standardizer`), so every rank starts from rank 0's model
   whatever its own initialization was. The data source is sharded (``sharding.py``).
2. **Every step** (:meth:`DataParallel.reduce`, between backward and the optimizer step):
   rank ``r`` holds the gradient ``g_r`` of the mean loss over its ``m_r`` rows of a global
   batch of ``M`` rows. The one-process gradient of the mean over the ``M`` rows is

       g = (1/M) sum_i grad loss_i = sum_r (m_r / M) g_r

   so each rank scales its gradient buffer by ``m_r / M`` and ONE in-place ``MPI_SUM``
   allreduce over the flat buffer (``FlatParams.grad``, float32 or float64) gives every rank
   ``g`` (equal shards: the average; a rank without rows adds 0). The batch's loss rides in
   one extra slot at the end of the same buffer (``sum_r (m_r/M) loss_r`` is the global mean
   loss), so every rank sees the same cost and divergence checks stop all ranks together;
   a second slot carries the ranks' preemption flags (a signal received by any rank: the
   sum is > 0), so every rank stops after the same step (``agree`` does the same with one
   small allreduce at each epoch end, where no step follows).
   The L2 term is applied by the optimizer with the GLOBAL batch size (``l2 / M``), as the
   loop already does (``mb`` there is the global batch's rows), identical on every rank since
   the parameters are. Then every rank takes the same optimizer step.
3. **Every epoch end** (:meth:`DataParallel.end_epoch`): rank 0's batch-norm running
   statistics are broadcast (per-rank batch statistics, as PyTorch DDP), so validation,
   callbacks and checkpoints see one model on every rank. Validation is computed by every
   rank on the whole validation set (identical parameters: identical results, no
   communication), so ``EarlyStopping`` and friends decide the same everywhere.
4. **Output**: only rank 0 prints progress (``verbose`` is 0 elsewhere) and writes
   ``ModelCheckpoint`` files (``writes_files``); the checkpoint holds nothing rank-specific.

Errors: a collective that does not complete within ``timeout`` raises ``DistributedError``;
any exception escaping a distributed ``fit`` on a world of more than one rank (except
``DivergenceError`` and ``Preempted``, which all ranks raise together) is printed with the
rank and the job is stopped with ``MPI_Abort`` (``abort_on_error=True``, the default), like
``python -m mpi4py``: otherwise the healthy ranks would wait for the failed one.

Bucketing / overlap with the backward pass: not done. The whole buffer is reduced once, after
backward (``benchmarks/RESULTS_distributed.md``: the allreduce of the 784-256-128-10 net's 235k
parameters took 0.09-0.5 ms of a 15-20 ms 2-rank step, so overlap could save < 3%, and on the
CPU the core that would overlap it is busy computing the backward pass).
"""

from __future__ import annotations

import sys
import time
import traceback

import numpy as np

from .comm import Communicator, DistributedError, timeout_from_env
from ..data.batches import batch_sizes
from ..train.errors import DivergenceError, Preempted
from ..train.strategy import SingleProcess
from .sharding import shard_source

#: Dropout mask seeds of ranks > 0: rank r uses mix(seed, r) (rank 0 keeps the model seed, so
#: its masks are a one-process run's masks for its rows).
_RANK_SALT = 0x9E3779B97F4A7C15
_M63 = (1 << 63) - 1
#: Seconds between printing a fatal error and MPI_Abort (see DataParallel.fail).
_ABORT_GRACE_SECONDS = 0.5


def _mix_seed(seed, rank):
    z = (int(seed) ^ (rank * _RANK_SALT)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _M63


class DataParallel(SingleProcess):
    """Options of a data-parallel ``fit`` (pass as ``fit(..., distributed=DataParallel(...))``;
    ``distributed=True`` is ``DataParallel()``).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    timeout : float, optional
        Seconds any collective may wait for the other ranks before the run stops with
        ``DistributedError``. Default ``$FASTDL_DIST_TIMEOUT`` or 300.
    abort_on_error : bool
        On an error escaping ``fit`` on one rank, print it and ``MPI_Abort`` the job (default),
        instead of raising it on this rank only (the others would wait until their timeout).
    """

    distributed = True

    def __init__(self, comm=None, timeout=None, abort_on_error=True):
        self._comm_arg = comm
        self.timeout = timeout_from_env(timeout)
        self.abort_on_error = bool(abort_on_error)
        self.comm = None

    def _connect(self):
        if self.comm is None:
            self.comm = Communicator(self._comm_arg, self.timeout)
        return self.comm

    @property
    def rank(self):
        return self._connect().rank

    @property
    def size(self):
        return self._connect().size

    def mask_seed(self, seed):
        """The dropout seed of this rank (rank 0: the model's seed)."""
        return int(seed) if self.rank == 0 else _mix_seed(seed, self.rank)

    # ------------------------------------------------------------------ strategy hooks
    reduces_every_step = True

    @property
    def writes_files(self):
        return self.rank == 0

    def verbose(self, verbose):
        return verbose if self.rank == 0 else 0

    def check_arguments(self, sample_weight=None):
        if sample_weight is not None:
            raise NotImplementedError(
                "sample_weight with distributed training is not supported: the ranks' shards "
                "carry no weights (and the allreduce divides by the global batch size, not its "
                "weight sum); train with distributed=False, or without sample_weight")

    def run(self, model, fit):
        """Run ``fit()`` as one rank of a data-parallel job (module docstring, Errors)."""
        comm = self._connect()
        model._dist = self
        previous = comm.watch_failures() if comm.size > 1 else None
        try:
            return fit()
        except (DivergenceError, Preempted):
            raise           # every rank raises it at the same step (the loss and flag are global)
        except BaseException as e:
            if comm.size > 1 and self.abort_on_error:
                self.fail(e)
            raise
        finally:
            comm.unwatch_failures(previous)
            model._dist = None

    # ------------------------------------------------------------------ start
    def fit_standardizer(self, model, X):
        """Before the data are read: rank 0 fits an unfitted ``model.standardizer`` (one pass
        over X on one rank only: the others read only their shards) and every rank gets rank
        0's statistics."""
        comm = self._connect()
        has = comm.allgather(np.array([model.standardizer is not None], np.float64),
                             "standardizer agreement check")[:, 0]
        if not (has == has[0]).all():
            raise DistributedError("the ranks disagree on model.standardizer (set on ranks "
                                   f"{np.flatnonzero(has).tolist()} only); set it on every rank")
        std = model.standardizer
        if std is None:
            return
        if comm.rank == 0:
            std._fit_for(model, X)
        n = model.input_dim
        buf = np.concatenate([std.mean, std.std]) if comm.rank == 0 else np.empty(2 * n)
        comm.bcast_(buf, what="standardizer broadcast")
        std.set_state({"mean": buf[:n], "std": buf[n:]})
        std._fit_for(model, X)          # fitted now: only checks the width

    def setup(self, model, source, epochs, batch_size, l2, shuffle, drop_last):
        """Agree, broadcast rank 0's model, shard ``source``; returns the sharded source."""
        comm = self._connect()
        comm.step = None
        fields = {"rows": source.m, "batch_size": batch_size, "epochs": epochs, "l2": l2,
                  "shuffle": bool(shuffle), "drop_last": bool(drop_last),
                  "params": model.params.size, "itemsize": model.dtype.itemsize,
                  "epochs_trained": model.epochs_trained, "steps_trained": model.steps_trained}
        table = comm.allgather(np.array([float(v) for v in fields.values()]),
                               "agreement check at the start of fit")
        bad = [k for j, k in enumerate(fields) if not (table[:, j] == table[0, j]).all()]
        if bad:
            raise DistributedError(
                "the ranks disagree on " + ", ".join(
                    f"{k} (per rank: {table[:, list(fields).index(k)].tolist()})" for k in bad)
                + "; every rank must call fit with the same data size, arguments and model")
        self._check_batch_norm(model, source.m, batch_size, drop_last, comm.size)
        seed = comm.bcast_(np.array([model.seed], np.int64), what="seed broadcast")
        model.seed = int(seed[0])
        self._bcast_host(model.params.snapshot(), model.params.restore, "parameter broadcast")
        self._bcast_running_stats(model, synchronized_too=True)
        self._bind_grad(model)
        return shard_source(source, comm.size, comm.rank)

    @staticmethod
    def _check_batch_norm(model, m, batch_size, drop_last, size):
        """Batch norm needs >= 2 rows per rank (per-rank statistics) or >= 1 row per rank in
        every global batch (synchronized: each rank joins the statistics' allreduce); checked
        up front on every rank so a short last batch cannot fail on one rank only."""
        bns = [l for l in model.layers if "running_mean" in getattr(l, "state_names", ())]
        if not bns:
            return
        smallest = int(batch_sizes(m, min(int(batch_size), m), drop_last).min())
        need = size if all(getattr(l, "sync", False) for l in bns) else 2 * size
        if smallest < need:
            kind = "synchronized BatchNorm needs 1" if need == size else "BatchNorm needs 2"
            raise ValueError(
                f"batch_size={batch_size} over {m} examples gives a global batch of {smallest} "
                f"rows, split over {size} ranks; {kind} row(s) per rank, so at least {need} "
                "rows per global batch: choose another batch_size, or fit(..., drop_last=True)")

    def _bcast_host(self, host, restore, what):
        host = np.ascontiguousarray(host)
        self.comm.bcast_(host, what=what)
        restore(host)

    def _bcast_running_stats(self, model, synchronized_too=False):
        """Rank 0's batch-norm running statistics to every rank (those of synchronized layers
        only at the start: they stay equal, being updated from global statistics)."""
        for layer in model.layers:
            if "running_mean" in getattr(layer, "state_names", ()) and \
                    (synchronized_too or not getattr(layer, "sync", False)):
                for name in layer.state_names:
                    self._bcast_host(layer.get_state(name),
                                     lambda h, l=layer, n=name: l.set_state(n, h),
                                     "batch-norm statistics broadcast")

    def _bind_grad(self, model):
        """Host backends: make ``params.grad`` the first n entries of an (n + 2) buffer whose
        last entries carry the batch loss and the stop flag, so one allreduce moves all three
        with no copy."""
        p, bk = model.params, model._bk
        self._n = p.size
        if bk.on_device:        # host-staged: copy the gradient out and back every step
            buf = getattr(self, "_stage", None)
            if buf is None or buf.shape[0] != p.size + 2 or buf.dtype != p.dtype:
                self._stage = np.empty(p.size + 2, p.dtype)
            return
        ext = getattr(model, "_grad_ext", None)
        if ext is not None and p.grad.base is ext and ext.shape[0] == p.size + 2:
            self._stage = ext
            return
        ext = np.zeros(p.size + 2, p.dtype)
        ext[:p.size] = p.grad
        p.grad = ext[:p.size]
        for i, layer in enumerate(model.layers):    # the layers' gradient views follow
            layer.bind(p, i, bk)
        model._grad_ext = self._stage = ext

    # ------------------------------------------------------------------ every step
    def reduce(self, model, ws, mb, loss_slot, sq_slot, l2, stop=False):
        """Turn this rank's gradient and loss into the global batch's (module docstring);
        returns whether any rank asked to stop (``stop``: this rank's preemption flag)."""
        comm, buf, n, bk = self.comm, self._stage, self._n, model._bk
        comm.step = model.steps_trained
        if ws.m == 0:       # no rows here: weight 0
            buf[...] = 0
            if l2:
                model._sq_weights_into(sq_slot)
        else:
            w = ws.m / mb
            if bk.on_device:
                buf[:n] = bk.to_numpy(model.params.grad)
                buf[n] = bk.to_numpy(loss_slot)[0]
            else:
                buf[n] = loss_slot[0]
            if w != 1.0:
                buf[:n + 1] *= buf.dtype.type(w)
        buf[n + 1] = 1.0 if stop else 0.0
        comm.allreduce_(buf)
        if bk.on_device:
            model.params.grad.copy_to_device(buf[:n])
            loss_slot.copy_to_device(np.array([buf[n]], np.float64))
        else:
            loss_slot[0] = buf[n]
        return bool(buf[n + 1] > 0)

    def agree(self, stop):
        """Whether any rank asked to stop, where no step follows (the end of an epoch)."""
        flag = np.array([1.0 if stop else 0.0])
        self.comm.allreduce_(flag, "stop flag allreduce")
        return bool(flag[0] > 0)

    def prepare_hook(self, prepare):
        """Batch preparation (augmentation) draws from (seed, epoch, batch): ranks > 0 pass a
        batch key of their own so their rows are not augmented like rank 0's."""
        if prepare is None or self.rank == 0:
            return prepare
        key = self.rank << 40
        return lambda Xb, epoch, batch: prepare(Xb, epoch, batch + key)

    # ------------------------------------------------------------------ epoch end / errors
    def end_epoch(self, model):
        self.comm.step = model.steps_trained
        self._bcast_running_stats(model)

    def sum_counts(self, values):
        values = np.array(values, dtype=np.float64)
        self.comm.allreduce_(values, "training accuracy allreduce")
        return values

    def fail(self, exc):
        """Print ``exc`` with this rank and stop every rank (``MPI_Abort``)."""
        comm = self.comm
        where = f"rank {comm.rank} of {comm.size}" if comm is not None else "rank ?"
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, DistributedError):
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            sys.stderr.write(tb)
        sys.stderr.write(f"fastdl.distributed: {where} failed: {msg}\n"
                         "fastdl.distributed: aborting all ranks (MPI_Abort)\n")
        sys.stderr.flush()
        sys.stdout.flush()
        # mpiexec forwards a rank's output through its proxy, which MPI_Abort tears down:
        # without a pause the message above is lost about one time in three (measured)
        time.sleep(_ABORT_GRACE_SECONDS)
        comm.abort(1)


def resolve(distributed):
    """``fit``'s ``distributed`` argument as a DataParallel (or None when False)."""
    if distributed is False or distributed is None:
        return None
    if distributed is True:
        return DataParallel()
    if isinstance(distributed, DataParallel):
        return distributed
    raise TypeError(f"distributed={distributed!r} is invalid; expected True, False or "
                    "fd.distributed.DataParallel(...)")
