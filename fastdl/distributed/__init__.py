"""Data-parallel training over MPI (``pip install "fastdl[mpi]"``; see docs/distributed.md).

Run the same script on every rank under ``mpiexec``::

    # train.py
    import fastdl as fd
    model = fd.Sequential([...], input_dim=784, seed=0)
    model.fit(X, y, optimizer=fd.optim.Adam(), epochs=5, batch_size=1024,   # GLOBAL batch
              distributed=True, callbacks=[fd.ModelCheckpoint("ckpt.npz")])  # rank 0 writes
    if fd.distributed.rank() == 0:
        model.save("model.npz")

    $ mpiexec -n 4 python train.py                # one machine
    $ mpiexec -f hosts -n 8 python train.py       # several (MPICH hydra host file)

Each rank takes its contiguous slice of every global mini-batch (``sharding.py``), computes
its gradient, and one allreduce over the flat gradient buffer gives every rank the gradient of
the whole global batch (``trainer.py``), so every rank takes the same optimizer step: the
parameters are those of a one-process ``fit`` with the same ``batch_size``.

Public names: :class:`DataParallel` (options: communicator, timeout, abort on error),
:class:`DistributedError`, :func:`rank`, :func:`size`, :func:`is_available`.
``fd.BatchNorm(sync=True)`` synchronizes batch statistics across ranks (``sync_batchnorm.py``).
"""

from __future__ import annotations

from .comm import DEFAULT_TIMEOUT, Communicator, DistributedError
from .sharding import shard_range
from .trainer import DataParallel


def is_available() -> bool:
    """True when mpi4py (and so an MPI library) can be imported."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 without MPI or outside ``mpiexec``)."""
    if not is_available():
        return 0
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


def size() -> int:
    """The number of ranks in ``MPI.COMM_WORLD`` (1 without MPI or outside ``mpiexec``)."""
    if not is_available():
        return 1
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_size()


__all__ = ["DataParallel", "DistributedError", "Communicator", "DEFAULT_TIMEOUT",
           "shard_range", "is_available", "rank", "size"]
