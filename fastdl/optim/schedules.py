"""Learning-rate schedules: pure functions of the epoch (course week 2, "learning rate decay").

A schedule is a callable object, ``schedule(t) -> lr``, with no state: the same ``t`` always
gives the same rate. ``t`` counts **epochs from 0** (the first epoch is 0, as in
``fit(..., lr_schedule=...)``, which sets ``optimizer.lr = schedule(epoch)`` before each epoch),
or optimizer steps when the schedule is built with ``unit="step"``; ``unit`` only tells the
training loop which counter to pass, the formula is the same. Arguments are validated when the
schedule is built; ``t`` when it is called.

* ``Constant(lr0)``: ``lr0``
* ``InverseTimeDecay(lr0, decay_rate)``: ``lr0 / (1 + decay_rate * t)`` (course)
* ``StaircaseDecay(lr0, decay_rate, interval)``: ``lr0 / (1 + decay_rate * floor(t / interval))``
  (the course's scheduled decay)
* ``ExponentialDecay(lr0, rate)``: ``lr0 * rate ** t`` (course: ``0.95 ** epoch``)
* ``SqrtDecay(lr0, k)``: ``lr0 * k / sqrt(max(t, 1))`` (course: ``k / sqrt(epoch)``)
* ``PiecewiseConstant(boundaries, values)``: ``values[i]`` on
  ``boundaries[i-1] <= t < boundaries[i]`` (the course's manual decay)
* ``Lambda(fn)``: ``fn(t)``, checked to be a finite number > 0

Keras' ``InverseTimeDecay(lr0, decay_steps, decay_rate, staircase)`` is
``InverseTimeDecay(lr0, decay_rate, interval=decay_steps, staircase=...)`` here.
"""

from __future__ import annotations

import math
import numbers

from .base import check_nonnegative, check_positive

_UNITS = ("epoch", "step")


def _check_unit(unit):
    if unit not in _UNITS:
        raise ValueError(f"unit={unit!r} is invalid; expected one of {_UNITS}")
    return unit


def _check_t(t):
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t={t!r} is invalid; expected the epoch (or step) count, a finite "
                         "number >= 0")
    return t


class Schedule:
    """Base class: ``schedule(t) -> lr``; ``unit`` is "epoch" (default) or "step"."""

    def __init__(self, unit="epoch"):
        self.unit = _check_unit(unit)

    def __call__(self, t) -> float:
        return float(self._lr(_check_t(t)))

    def _lr(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def _args(self) -> dict:
        return {}

    def __repr__(self):
        args = dict(self._args(), **({"unit": self.unit} if self.unit != "epoch" else {}))
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


class Constant(Schedule):
    """``lr(t) = lr0``."""

    def __init__(self, lr0, unit="epoch"):
        super().__init__(unit)
        self.lr0 = check_positive("lr0", lr0)

    def _lr(self, t):
        return self.lr0

    def _args(self):
        return {"lr0": self.lr0}


class InverseTimeDecay(Schedule):
    """``lr(t) = lr0 / (1 + decay_rate * t / interval)`` (course: ``interval = 1``).

    With ``staircase=True`` ``t / interval`` is floored: :class:`StaircaseDecay`.
    """

    def __init__(self, lr0, decay_rate, interval=1, staircase=False, unit="epoch"):
        super().__init__(unit)
        self.lr0 = check_positive("lr0", lr0)
        self.decay_rate = check_nonnegative("decay_rate", decay_rate)
        self.interval = check_positive("interval", interval)
        if not isinstance(staircase, bool):
            raise TypeError(f"staircase={staircase!r} is invalid; expected True or False")
        self.staircase = staircase

    def _lr(self, t):
        x = t / self.interval
        if self.staircase:
            x = math.floor(x)
        return self.lr0 / (1.0 + self.decay_rate * x)

    def _args(self):
        return {"lr0": self.lr0, "decay_rate": self.decay_rate, "interval": self.interval,
                "staircase": self.staircase}


class StaircaseDecay(InverseTimeDecay):
    """``lr(t) = lr0 / (1 + decay_rate * floor(t / interval))``: the course's scheduled decay
    (``schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000)``)."""

    def __init__(self, lr0, decay_rate, interval, unit="epoch"):
        super().__init__(lr0, decay_rate, interval, staircase=True, unit=unit)

    def _args(self):
        return {"lr0": self.lr0, "decay_rate": self.decay_rate, "interval": self.interval}


class ExponentialDecay(Schedule):
    """``lr(t) = lr0 * rate ** t`` with ``0 < rate <= 1`` (course: ``0.95 ** epoch``)."""

    def __init__(self, lr0, rate, unit="epoch"):
        super().__init__(unit)
        self.lr0 = check_positive("lr0", lr0)
        self.rate = check_positive("rate", rate)
        if self.rate > 1.0:
            raise ValueError(f"rate={rate!r} is invalid; expected a number in (0, 1] (a decay)")

    def _lr(self, t):
        return self.lr0 * self.rate ** t

    def _args(self):
        return {"lr0": self.lr0, "rate": self.rate}


class SqrtDecay(Schedule):
    """``lr(t) = lr0 * k / sqrt(t)`` (course: ``k / sqrt(epoch_num) * alpha0``).

    The course counts epochs from 1; here epochs count from 0, and ``t = 0`` is given the rate
    of ``t = 1`` (``lr0 * k``) instead of dividing by zero, so the formula holds exactly for
    every ``t >= 1``.
    """

    def __init__(self, lr0, k=1.0, unit="epoch"):
        super().__init__(unit)
        self.lr0 = check_positive("lr0", lr0)
        self.k = check_positive("k", k)

    def _lr(self, t):
        return self.lr0 * self.k / math.sqrt(max(t, 1))

    def _args(self):
        return {"lr0": self.lr0, "k": self.k}


class PiecewiseConstant(Schedule):
    """``values[i]`` on ``boundaries[i-1] <= t < boundaries[i]`` (the course's "manual decay").

    ``PiecewiseConstant([10, 20], [0.1, 0.01, 0.001])``: epochs 0-9 use 0.1, 10-19 0.01, then
    0.001. Keras' ``PiecewiseConstantDecay`` switches *after* a boundary (``t > b``); here a
    boundary is the first epoch of the new value, as PyTorch's ``MultiStepLR`` milestones.
    """

    def __init__(self, boundaries, values, unit="epoch"):
        super().__init__(unit)
        try:
            boundaries, values = list(boundaries), list(values)
        except TypeError:
            raise TypeError("boundaries and values must be sequences of numbers") from None
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"got {len(boundaries)} boundaries and {len(values)} values; "
                             "expected len(values) == len(boundaries) + 1")
        self.boundaries = [check_nonnegative(f"boundaries[{i}]", b)
                           for i, b in enumerate(boundaries)]
        if any(b1 >= b2 for b1, b2 in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries={boundaries!r} is invalid; expected strictly "
                             "increasing numbers")
        self.values = [check_positive(f"values[{i}]", v) for i, v in enumerate(values)]

    def _lr(self, t):
        i = 0
        while i < len(self.boundaries) and t >= self.boundaries[i]:
            i += 1
        return self.values[i]

    def _args(self):
        return {"boundaries": self.boundaries, "values": self.values}


class Lambda(Schedule):
    """Any callable ``fn(t) -> lr``; each result is checked to be a finite number > 0."""

    def __init__(self, fn, unit="epoch"):
        super().__init__(unit)
        if not callable(fn):
            raise TypeError(f"fn={fn!r} is not callable; expected a function of the epoch")
        self.fn = fn

    def _lr(self, t):
        lr = self.fn(t)
        try:
            return check_positive("lr", lr)
        except ValueError:
            raise ValueError(f"the schedule {self.fn!r} returned {lr!r} at t={t}; expected a "
                             "finite number > 0") from None

    def _args(self):
        return {"fn": self.fn}


def as_schedule(obj) -> Schedule:
    """A :class:`Schedule` from a schedule (returned as is), a callable or a constant number."""
    if isinstance(obj, Schedule):
        return obj
    if callable(obj):
        return Lambda(obj)
    if isinstance(obj, numbers.Real) and not isinstance(obj, bool):
        return Constant(obj)
    raise TypeError(f"lr_schedule={obj!r} is invalid; expected a schedule, a callable "
                    "epoch -> lr, or a number")


__all__ = ["Schedule", "Constant", "InverseTimeDecay", "StaircaseDecay", "ExponentialDecay",
           "SqrtDecay", "PiecewiseConstant", "Lambda", "as_schedule"]
