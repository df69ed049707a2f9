"""The MPI communicator behind data-parallel training, with deadlines on every collective.

Every collective ``fit`` issues goes through :class:`Communicator`: it posts the non-blocking
MPI call (``Iallreduce``/``Ibcast``/``Iallgather``) and polls it with ``Test`` until it completes
or the deadline (``timeout`` seconds) passes. A blocking ``MPI_Allreduce`` waits forever for a
rank that died or hangs; a polled request turns that into a :class:`DistributedError` naming
the collective, the step and the timeout, after which ``fit`` aborts the whole job
(``MPI_Abort``), so no rank is left waiting.

Polling ``Test`` is also what drives MPICH's progress engine for a non-blocking collective, so
the loop spins for the first 20 ms (once both ranks are in it, the 0.94 MB gradient of the
784-256-128-10 net is reduced in 0.1-0.2 ms) and only then sleeps 0.2 ms between tests, to
leave the core to the other ranks while one of them is far behind (compilation on the first
step, a rank descheduled by other load). The spin must outlast the ranks' step-to-step jitter:
a rank that went to sleep holds the collective up until it wakes, every step. Measured on the
quiet 2-core dev box (2 ranks x 1 thread vs 1 rank, 784-256-128-10, Adam, batch 1024, median of
3 rounds, benchmarks/distributed_check.py): spinning 0.5 ms gave 1.37-1.63x, 2 ms 1.50x,
20 ms 1.74x. Blocking MPI calls busy-poll the same way (MPICH's default). On a loaded machine
the spin costs CPU time other processes could use (the previous 0.5 ms setting was chosen
under such load).

``mpi4py`` is an optional dependency (``pip install "fastdl[mpi]"``): it is imported only here,
only when a distributed ``fit`` starts.
"""

from __future__ import annotations

import os
import time

import numpy as np

#: Default deadline (seconds) of one collective; ``FASTDL_DIST_TIMEOUT`` overrides it.
#: Generous because the first step of a run includes JIT compilation on every rank.
DEFAULT_TIMEOUT = 300.0
#: Seconds a wait spins on ``Test`` before it starts sleeping between tests.
_SPIN_SECONDS = 0.02
_SLEEP_SECONDS = 0.0002


class DistributedError(RuntimeError):
    """A distributed run cannot continue: a rank died or stalled past the timeout, or the
    ranks disagree on the run's arguments."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("distributed training needs mpi4py and an MPI library: "
                          'pip install "fastdl[mpi]" (mpi4py + the mpich wheel), then run '
                          "under mpiexec -n N") from e
    return MPI


def timeout_from_env(timeout=None):
    """``timeout`` if given, else ``$FASTDL_DIST_TIMEOUT``, else ``DEFAULT_TIMEOUT``."""
    if timeout is None:
        env = os.environ.get("FASTDL_DIST_TIMEOUT")
        if env is None:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(env)
        except ValueError:
            raise ValueError(f"FASTDL_DIST_TIMEOUT={env!r} is invalid; expected a number of "
                             "seconds > 0") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not np.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout={timeout!r} is invalid; expected a number of seconds > 0")
    return float(timeout)


class Communicator:
    """An MPI communicator (``MPI.COMM_WORLD`` by default) whose collectives have deadlines.

    Buffers are NumPy arrays (float32/float64/int64) reduced in place; device arrays are
    staged through the host by the caller.
    """

    def __init__(self, comm=None, timeout=None):
        MPI = self.MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = timeout_from_env(timeout)
        self.step = None            # the global step, for error messages

    # ------------------------------------------------------------------ waiting
    def wait(self, req, what):
        """Complete ``req`` or raise DistributedError after ``timeout`` seconds."""
        MPI = self.MPI
        start = time.monotonic()
        spin_until = start + _SPIN_SECONDS
        deadline = start + self.timeout
        try:
            while not req.Test():
                now = time.monotonic()
                if now > deadline:
                    raise DistributedError(
                        f"rank {self.rank} of {self.size}: {what}"
                        + (f" at step {self.step}" if self.step is not None else "")
                        + f" did not complete within {self.timeout:g} s: another rank died, "
                        "hangs or is far behind. Stopping the job (MPI_Abort); the last "
                        "checkpoint is intact and can be resumed with any number of ranks. "
                        "Raise the limit with FASTDL_DIST_TIMEOUT or "
                        "fit(distributed=fd.distributed.DataParallel(timeout=...)) if steps "
                        "are legitimately this slow.")
                if now > spin_until:
                    time.sleep(_SLEEP_SECONDS)
        except MPI.Exception as e:
            raise DistributedError(f"rank {self.rank} of {self.size}: {what} failed in MPI "
                                   f"({e}); another rank probably died") from None

    # ------------------------------------------------------------------ collectives
    def allreduce_(self, buf, what="gradient allreduce"):
        """Sum ``buf`` (contiguous NumPy array) over all ranks, in place."""
        if self.size == 1:
            return buf
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        return buf

    def bcast_(self, buf, root=0, what="broadcast"):
        """Rank ``root``'s ``buf`` into every rank's ``buf`` (contiguous NumPy array)."""
        if self.size == 1:
            return buf
        self.wait(self.comm.Ibcast(buf, root=root), what)
        return buf

    def allgather(self, row, what="allgather"):
        """Every rank's 1-D float64 ``row`` (same length everywhere) as a (size, n) array."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty((self.size, row.shape[0]), np.float64)
        if self.size == 1:
            out[0] = row
            return out
        self.wait(self.comm.Iallgather(row, out), what)
        return out

    def abort(self, code=1):
        self.comm.Abort(code)

    # ------------------------------------------------------------------ failure notices
    def watch_failures(self):
        """Turn the process manager's notice that a rank died into a DistributedError.

        MPICH's ``mpiexec`` (hydra) sends SIGUSR1 to the surviving ranks when one dies and
        the job runs with ``-disable-auto-cleanup`` (without it, hydra kills them all at once);
        SIGUSR1's default action would end this rank without a word. Installed for the
        duration of ``fit`` when SIGUSR1 has its default handler and this is the main
        thread; returns the previous handler for :meth:`unwatch_failures`."""
        import signal
        import threading
        sig = getattr(signal, "SIGUSR1", None)
        if sig is None or threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(sig) is not signal.SIG_DFL:
            return None

        def notice(signum, frame):
            raise DistributedError(
                f"rank {self.rank} of {self.size}: the MPI process manager reports that "
                "another rank died (SIGUSR1)"
                + (f" at step {self.step}" if self.step is not None else "")
                + ". Stopping the job (MPI_Abort); the last checkpoint is intact and can be "
                "resumed with any number of ranks.")
        signal.signal(sig, notice)
        return signal.SIG_DFL

    def unwatch_failures(self, previous):
        if previous is not None:
            import signal
            signal.signal(signal.SIGUSR1, previous)
