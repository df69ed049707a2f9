"""Signals: preemption requests caught as a flag, and signals held back while a file is saved.

Batch schedulers ask a job to stop with a signal before they kill it: Slurm sends SIGTERM (or
the signal chosen with ``--signal``) and SIGKILL after ``KillWait`` seconds; Kubernetes sends
SIGTERM and SIGKILL after the pod's grace period (30 s by default). Python runs a signal's
handler in the main thread, between two bytecodes, whatever that thread is doing, so

* :class:`PreemptionFlag` (installed by ``fit`` for ``preemption_signals``) only records that
  a signal came; the training loop reads the flag at its safe points (after a step), writes a
  checkpoint there and stops;
* :func:`deferred` holds signals back while a file is written (``fastdl/io.py``): a handler
  that raises (Ctrl-C's ``KeyboardInterrupt``) would otherwise interrupt ``zipfile`` midway
  (seen as "Can't close the ZIP file while there is an open writing handle"). The signals that
  arrive are delivered again, to the handlers they would have met, once the file is complete
  and renamed (or its temporary file removed).

Both work in the main thread only (``signal.signal`` refuses other threads); elsewhere
:func:`deferred` does nothing (handlers do not run in other threads anyway) and an explicit
``preemption_signals`` is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: Signals held back while a file is written, where the platform has them.
DEFERRED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
#: Signals a Python handler cannot take (the OS does not let them be caught), or that report a
#: fault in the process itself (a handler would return into the faulting instruction).
UNCATCHABLE = ("SIGKILL", "SIGSTOP")
FAULTS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT")


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _available():
    return sorted(s.name for s in signal.Signals)


def check_signal_names(name, value):
    """``value`` (a tuple or list of signal names such as ``("SIGTERM", "SIGUSR1")``, or
    ``signal.Signals`` members) as a tuple of ``signal.Signals``; a clear error naming the
    argument ``name`` for anything else, before anything runs."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name}={value!r} is invalid; expected a tuple of signal names such as "
                        "('SIGTERM', 'SIGUSR1'), or () for none")
    out = []
    for v in value:
        if isinstance(v, signal.Signals):
            sig = v
        elif isinstance(v, str):
            sig = getattr(signal.Signals, v, None) if v.startswith("SIG") else None
            if sig is None:
                raise ValueError(f"{name} contains {v!r}, which is not a signal of this "
                                 f"platform; expected names among {', '.join(_available())}")
        else:
            raise TypeError(f"{name} contains {v!r}; expected signal names (str) such as "
                            "'SIGTERM'")
        if sig.name in UNCATCHABLE:
            raise ValueError(f"{name} contains {sig.name}, which no process can handle (the "
                             "OS stops or kills it at once); schedulers send SIGTERM or a "
                             "chosen signal such as SIGUSR1 first: list that one")
        if sig.name in FAULTS:
            raise ValueError(f"{name} contains {sig.name}, a signal that reports a fault in "
                             "the process itself, not a request to stop; use SIGTERM, SIGINT, "
                             "SIGHUP, SIGUSR1 or SIGUSR2")
        if sig not in out:
            out.append(sig)
    return tuple(out)


class PreemptionFlag:
    """Handlers for ``signals`` that record the first one received (``received``: its name,
    or None), installed by :meth:`install` and put back as they were by :meth:`restore`."""

    def __init__(self, signals):
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name

    def install(self, argument="preemption_signals"):
        if not self.signals:
            return self
        if not in_main_thread():
            raise ValueError(f"{argument}={tuple(s.name for s in self.signals)!r} needs fit to "
                             "run in the main thread (Python delivers signals there only); "
                             f"pass {argument}=() when fit runs in another thread")
        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handler)
        except (OSError, ValueError, RuntimeError) as e:
            self.restore()
            raise ValueError(f"{argument}: {sig.name} cannot be handled on this platform "
                             f"({e})") from None
        return self

    def restore(self):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.received is not None


class _NoFlag:
    """A flag that is never raised (preemption off)."""
    signals = ()
    received = None
    requested = False

    def install(self, argument=None):
        return self

    def restore(self):
        pass


NO_FLAG = _NoFlag()


@contextlib.contextmanager
def deferred(names=DEFERRED):
    """Hold back the signals ``names`` (those this platform has and that are not ignored)
    for the duration of the block, then deliver each one that arrived, once, to the handler
    it would have met (the main thread only; elsewhere a no-op)."""
    if not in_main_thread():
        yield
        return
    arrived = []

    def hold(signum, frame):
        if signum not in arrived:
            arrived.append(signum)
    previous = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN or current is None:    # ignored, or not Python's to set
            continue
        previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in arrived:
            signal.raise_signal(signum)
