"""One compilation per kernel across processes: a file lock around Numba's cache.

Numba's JIT cache (``cache=True``) is keyed by function and signature and written atomically,
but nothing stops N processes from compiling the same kernel at once: under ``mpiexec -n 8``
on one machine every rank compiled every kernel (8x the CPU time, on cores the ranks share),
and only the last writer's file survived. Here every compilation of a fastdl cpu kernel runs
while holding an exclusive ``fcntl.flock`` on ``<cache dir>/fastdl-compile.lock``; Numba's own
``compile`` first looks in the cache (it rereads the index file from disk), so a process that
waited finds the kernel another one compiled meanwhile and loads it instead (milliseconds).

Order of locks: Numba's global compiler lock (a re-entrant in-process lock) is taken first,
then the file lock, so nested compilations (a kernel typing its callees) and other threads
cannot invert the order. The file lock is held once per process (a depth counter) and
released when the outermost compilation ends, or by the OS if the process dies.

Falls back to compiling without the lock, never failing: no cache (``config.CACHE_DIR`` is
None), no ``fcntl`` (Windows), a lock file that cannot be opened, or a wait longer than
``WAIT_S`` (a stopped or hung peer: compiling twice beats waiting forever).
"""

from __future__ import annotations

import os
import threading
import time

try:
    import fcntl
except ImportError:                 # Windows: no advisory file locks here (see module doc)
    fcntl = None

#: Seconds a process waits for another one's compilation before compiling anyway.
WAIT_S = 600.0
_POLL_S = 0.005
LOCK_NAME = "fastdl-compile.lock"


class _FileLock:
    """A re-entrant (per process) exclusive lock on a file, acquired by polling so that a
    deadline applies and signals (Ctrl-C) are handled while waiting."""

    def __init__(self):
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd = None

    def acquire(self, path):
        self._mutex.acquire()
        self._depth += 1
        if self._depth > 1 or fcntl is None or path is None:
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return                                  # read-only or missing dir: no lock
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return
                time.sleep(_POLL_S)
            except OSError:                         # a file system without flock
                os.close(fd)
                return

    def release(self):
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._mutex.release()


_lock = _FileLock()


def lock_path():
    from ... import config
    return None if config.CACHE_DIR is None else os.path.join(config.CACHE_DIR, LOCK_NAME)


def locked_compiles(dispatcher):
    """Make ``dispatcher.compile`` (every compilation, also of a callee while its caller is
    typed) run under the cross-process lock; returns the dispatcher."""
    from numba.core.compiler_lock import global_compiler_lock
    compile_unlocked = dispatcher.compile

    def compile(sig):
        with global_compiler_lock:
            _lock.acquire(lock_path())
            try:
                return compile_unlocked(sig)
            finally:
                _lock.release()
    dispatcher.compile = compile
    return dispatcher
