"""Bias/variance diagnosis and the basic recipe for machine learning (course week 1).

With errors as fractions (0.01 = 1%):

    avoidable bias = train error - Bayes error (human-level error as a proxy)
    variance       = dev error - train error         (or train-dev error - train error)
    data mismatch  = dev error - train-dev error     (only when a train-dev set is given: the
                                                     train-dev set comes from the training
                                                     distribution but was not trained on)

A gap counts as "high" when it exceeds ``tolerance`` (default 2 percentage points). The
course's four cases with Bayes error ~0: train/dev 1%/11% -> high variance; 15%/16% -> high
bias; 15%/30% -> high bias and high variance; 0.5%/1% -> fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._validation import check_float

ADVICE = {
    "bias": ["train a bigger network (more hidden units or layers)",
             "train longer or with a better optimizer (momentum, RMSprop, Adam)",
             "try another architecture"],
    "variance": ["get more training data (or augment it)",
                 "regularize: L2 (l2=...), dropout, early stopping",
                 "try another architecture"],
    "mismatch": ["do error analysis on the dev set to see how it differs from training data",
                 "make the training data more like dev/test (collect it, or synthesize it)"],
}


@dataclass
class Diagnosis:
    train_error: float
    dev_error: float
    bayes_error: float
    train_dev_error: float | None
    avoidable_bias: float
    variance: float
    data_mismatch: float | None
    verdict: str
    advice: list = field(default_factory=list)

    def __str__(self):
        gaps = [_gap("avoidable bias", self.avoidable_bias, "train error",
                     "the Bayes-error estimate"),
                _gap("variance", self.variance,
                     "dev error" if self.train_dev_error is None else "train-dev error",
                     "train error")]
        if self.data_mismatch is not None:
            gaps.append(_gap("data mismatch", self.data_mismatch, "dev error",
                             "train-dev error"))
        lines = [f"train error {self.train_error:.2%}, dev error {self.dev_error:.2%}, "
                 f"Bayes error {self.bayes_error:.2%}"
                 + (f", train-dev error {self.train_dev_error:.2%}"
                    if self.train_dev_error is not None else ""),
                 ", ".join(gaps),
                 f"verdict: {self.verdict}"]
        lines += [f"  - {a}" for a in self.advice]
        return "\n".join(lines)


def _gap(name, value, upper, lower):
    """The gap as printed: "variance 3.00%"; a negative gap (a small or easy dev set, noise)
    says what it means instead of showing a negative percentage. The field keeps the value."""
    if value >= 0:
        return f"{name} {value:.2%}"
    return f"{name} 0 ({upper} is {-value:.2%} below {lower})"


def _error(name, value):
    v = check_float(name, value, minimum=0.0)
    if v > 1.0:
        raise ValueError(f"{name}={value!r} is invalid; expected an error rate in [0, 1] "
                         "(0.01 means 1%)")
    return v


def diagnose(train_error, dev_error, bayes_error=0.0, train_dev_error=None, tolerance=0.02):
    """Avoidable bias, variance (and data mismatch), a verdict and the basic-recipe advice."""
    tr = _error("train_error", train_error)
    dv = _error("dev_error", dev_error)
    by = _error("bayes_error", bayes_error)
    td = None if train_dev_error is None else _error("train_dev_error", train_dev_error)
    tol = check_float("tolerance", tolerance, minimum=0.0)
    bias = tr - by
    variance = (td if td is not None else dv) - tr
    mismatch = None if td is None else dv - td
    high_bias, high_var = bias > tol, variance > tol
    high_mis = mismatch is not None and mismatch > tol
    if high_bias and high_var:
        verdict = "high bias and high variance"
    elif high_bias:
        verdict = "high bias"
    elif high_var:
        verdict = "high variance"
    else:
        verdict = "fine"
    if high_mis:
        verdict = "data mismatch" if verdict == "fine" else verdict + ", and data mismatch"
    advice = (ADVICE["bias"] if high_bias else []) + (ADVICE["variance"] if high_var else []) \
        + (ADVICE["mismatch"] if high_mis else [])
    advice = list(dict.fromkeys(advice))    # "try another architecture" is in both lists
    if not advice:
        advice = ["the model is close to Bayes error on train and dev: done, or lower the "
                  "Bayes-error estimate if humans do better"]
    return Diagnosis(tr, dv, by, td, bias, variance, mismatch, verdict, advice)
