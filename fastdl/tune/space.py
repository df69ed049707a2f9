"""Search spaces: each hyperparameter is drawn on the scale it matters on.

``uniform`` (linear), ``log_uniform`` (10^U(log10 lo, log10 hi): learning rates),
``one_minus_log`` (β = 1 − 10^U(log10(1−hi), log10(1−lo)): momentum / averaging betas),
``int_uniform`` / ``log_int`` (integers: units, layers, mini-batch sizes) and ``choice``.

Every dimension is validated when it is built, samples from a ``numpy.random.Generator``, and
describes itself with ``scale`` and ``bounds`` (for plots and for coarse-to-fine narrowing). Narrowing
works in the dimension's *internal coordinate*: x for linear, log10(x) for log, log10(1 − x) for
one-minus-log, so a box is zoomed on the same scale it is sampled on.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["Dimension", "uniform", "log_uniform", "one_minus_log", "int_uniform", "log_int",
           "choice", "sample_config", "check_space", "describe_space"]


def _real(fn, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{fn}: {name}={value!r} must be a finite real number")
    return float(value)


def _integer(fn, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name}={value!r} must be an integer")
    return int(value)


def _ordered(fn, lo, hi, strict=True):
    if (hi <= lo) if strict else (hi < lo):
        rel = "lo < hi" if strict else "lo <= hi"
        raise ValueError(f"{fn}: the range lo={lo!r}, hi={hi!r} is empty or inverted; expected {rel}")


class Dimension:
    """One hyperparameter. Subclasses define ``scale``, ``bounds``, ``sample`` and ``narrow``."""

    scale = "linear"
    numeric = True

    def sample(self, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_internal(self, x):
        return float(x)

    def narrow(self, values, pad=0.5, min_frac=0.05):
        """A new dimension of the same kind whose box covers ``values`` (in the internal
        coordinate) padded by ``pad`` × their spread plus ``min_frac`` × the current width, and
        clipped to the current box."""
        u = [self.to_internal(v) for v in values]
        lo_u, hi_u = self.to_internal(self.bounds[0]), self.to_internal(self.bounds[1])
        lo_u, hi_u = min(lo_u, hi_u), max(lo_u, hi_u)
        spread = max(u) - min(u)
        p = pad * spread + min_frac * (hi_u - lo_u)
        return self._from_internal_box(max(lo_u, min(u) - p), min(hi_u, max(u) + p))

    def describe(self):
        return {"kind": type(self).__name__, "scale": self.scale, "bounds": list(self.bounds)}

    def __eq__(self, other):
        return type(self) is type(other) and self.describe() == other.describe()

    def __hash__(self):
        return hash(repr(self))


class uniform(Dimension):
    """x ~ U(lo, hi)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = _real("uniform", "lo", lo), _real("uniform", "hi", hi)
        _ordered("uniform", self.lo, self.hi)

    bounds = property(lambda self: (self.lo, self.hi))

    def sample(self, rng):
        return float(rng.uniform(self.lo, self.hi))

    def _from_internal_box(self, a, b):
        return uniform(a, b) if b > a else uniform(a, a + 1e-12 * max(1.0, abs(a)))

    def __repr__(self):
        return f"uniform({self.lo!r}, {self.hi!r})"


class log_uniform(Dimension):
    """x = 10^U(log10 lo, log10 hi): as many draws in [1e-4, 1e-3] as in [0.1, 1]."""

    scale = "log"

    def __init__(self, lo, hi):
        self.lo, self.hi = _real("log_uniform", "lo", lo), _real("log_uniform", "hi", hi)
        for n, v in (("lo", self.lo), ("hi", self.hi)):
            if v <= 0:
                raise ValueError(f"log_uniform: {n}={v!r} is invalid; a log scale needs bounds > 0")
        _ordered("log_uniform", self.lo, self.hi)

    bounds = property(lambda self: (self.lo, self.hi))

    def to_internal(self, x):
        return math.log10(x)

    def sample(self, rng):
        return float(10.0 ** rng.uniform(math.log10(self.lo), math.log10(self.hi)))

    def _from_internal_box(self, a, b):
        lo, hi = 10.0 ** a, 10.0 ** b
        return log_uniform(lo, hi if hi > lo else lo * (1 + 1e-9))

    def __repr__(self):
        return f"log_uniform({self.lo!r}, {self.hi!r})"


class one_minus_log(Dimension):
    """β = 1 − 10^U(log10(1 − hi), log10(1 − lo)), the course's rule for β in [0.9, 0.999]:
    1 − β is log-uniform in [0.001, 0.1], so [0.9, 0.99] and [0.99, 0.999] get equal draws."""

    scale = "one_minus_log"

    def __init__(self, lo, hi):
        self.lo, self.hi = _real("one_minus_log", "lo", lo), _real("one_minus_log", "hi", hi)
        for n, v in (("lo", self.lo), ("hi", self.hi)):
            if not 0.0 < v < 1.0:
                raise ValueError(f"one_minus_log: {n}={v!r} is invalid; expected a value in the "
                                 "open interval (0, 1)")
        _ordered("one_minus_log", self.lo, self.hi)

    bounds = property(lambda self: (self.lo, self.hi))

    def to_internal(self, x):
        return math.log10(1.0 - x)

    def sample(self, rng):
        r = rng.uniform(math.log10(1.0 - self.hi), math.log10(1.0 - self.lo))
        return float(1.0 - 10.0 ** r)

    def _from_internal_box(self, a, b):
        # a < b in log10(1 - β) means a ↔ the larger β
        lo, hi = 1.0 - 10.0 ** b, 1.0 - 10.0 ** a
        return one_minus_log(lo, hi if hi > lo else min(lo + 1e-12, (1 + lo) / 2))

    def __repr__(self):
        return f"one_minus_log({self.lo!r}, {self.hi!r})"


class int_uniform(Dimension):
    """An integer uniform in [lo, hi] (both inclusive)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = _integer("int_uniform", "lo", lo), _integer("int_uniform", "hi", hi)
        _ordered("int_uniform", self.lo, self.hi, strict=False)

    bounds = property(lambda self: (self.lo, self.hi))

    def sample(self, rng):
        return int(rng.integers(self.lo, self.hi + 1))

    def _from_internal_box(self, a, b):
        lo, hi = max(self.lo, math.floor(a)), min(self.hi, math.ceil(b))
        return int_uniform(lo, max(lo, hi))

    def __repr__(self):
        return f"int_uniform({self.lo!r}, {self.hi!r})"


class log_int(Dimension):
    """An integer whose log10 is uniform in [log10 lo, log10(hi + 1)) (then floored), so 2..4 get
    as many draws as 200..400: hidden units, mini-batch sizes."""

    scale = "log"

    def __init__(self, lo, hi):
        self.lo, self.hi = _integer("log_int", "lo", lo), _integer("log_int", "hi", hi)
        if self.lo < 1:
            raise ValueError(f"log_int: lo={self.lo!r} is invalid; a log scale needs bounds >= 1")
        _ordered("log_int", self.lo, self.hi, strict=False)

    bounds = property(lambda self: (self.lo, self.hi))

    def to_internal(self, x):
        return math.log10(x)

    def sample(self, rng):
        v = int(math.floor(10.0 ** rng.uniform(math.log10(self.lo), math.log10(self.hi + 1))))
        return min(max(v, self.lo), self.hi)

    def _from_internal_box(self, a, b):
        lo = max(self.lo, int(math.floor(10.0 ** a)))
        hi = min(self.hi, int(math.ceil(10.0 ** b)))
        return log_int(lo, max(lo, hi))

    def __repr__(self):
        return f"log_int({self.lo!r}, {self.hi!r})"


class choice(Dimension):
    """One of ``options``, each equally likely. Options must be JSON-representable (str, int,
    float, bool, None) so trials can be stored."""

    scale = "categorical"
    numeric = False

    def __init__(self, options):
        if isinstance(options, (str, bytes)) or not hasattr(options, "__iter__"):
            raise TypeError(f"choice: options={options!r} must be a list of values")
        options = list(options)
        if not options:
            raise ValueError("choice: options=[] is empty; expected at least one option")
        for o in options:
            if o is not None and not isinstance(o, (str, bool, numbers.Real)):
                raise TypeError(f"choice: option {o!r} must be a str, int, float, bool or None "
                                "(trials are stored as JSON)")
        self.options = options

    @property
    def bounds(self):
        return tuple(self.options)

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def narrow(self, values, pad=0.5, min_frac=0.05):
        keep = [o for o in self.options if any(o == v and type(o) is type(v) for v in values)]
        return choice(keep or self.options)

    def describe(self):
        return {"kind": "choice", "scale": self.scale, "bounds": list(self.options)}

    def __repr__(self):
        return f"choice({self.options!r})"


def check_space(space):
    """A search space is a non-empty dict ``name -> Dimension``; a plain JSON value is a constant."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"space={space!r} is invalid; expected a non-empty dict of name -> dimension "
                         "(fd.tune.log_uniform(...), choice([...]), ...)")
    for k, v in space.items():
        if not isinstance(k, str):
            raise TypeError(f"space key {k!r} must be a str")
        if not isinstance(v, Dimension) and not (v is None or isinstance(v, (str, bool, numbers.Real))):
            raise TypeError(f"space[{k!r}]={v!r} must be a fd.tune dimension or a constant "
                            "str/int/float/bool/None")
    return space


def sample_config(space, rng):
    """Draw one config: dimensions in the space's order, constants passed through."""
    return {k: (v.sample(rng) if isinstance(v, Dimension) else v) for k, v in space.items()}


def describe_space(space):
    return {k: (v.describe() if isinstance(v, Dimension) else {"kind": "constant", "value": v})
            for k, v in space.items()}
