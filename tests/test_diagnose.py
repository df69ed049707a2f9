"""Bias/variance diagnosis on the course's four cases."""

import pytest

import fastdl as fd
from fastdl.data import make_moons


@pytest.mark.parametrize("train, dev, verdict", [
    (0.01, 0.11, "high variance"),
    (0.15, 0.16, "high bias"),
    (0.15, 0.30, "high bias and high variance"),
    (0.005, 0.01, "fine"),
])
def test_course_cases(train, dev, verdict):
    d = fd.diagnose(train, dev, bayes_error=0.0)
    assert d.verdict == verdict
    assert d.avoidable_bias == pytest.approx(train)
    assert d.variance == pytest.approx(dev - train)
    assert d.advice


def test_bayes_error_changes_the_verdict():
    # 15% train error is fine when humans also make 15% errors (course example)
    assert fd.diagnose(0.15, 0.16, bayes_error=0.15).verdict == "fine"


def test_train_dev_error_separates_variance_from_mismatch():
    d = fd.diagnose(0.01, 0.10, train_dev_error=0.015)
    assert d.verdict == "data mismatch"
    assert d.variance == pytest.approx(0.005)
    assert d.data_mismatch == pytest.approx(0.085)
    assert any("error analysis" in a for a in d.advice)
    d = fd.diagnose(0.01, 0.10, train_dev_error=0.09)
    assert d.verdict == "high variance"


def test_advice_matches_verdict():
    assert any("bigger network" in a for a in fd.diagnose(0.2, 0.21).advice)
    assert any("regularize" in a for a in fd.diagnose(0.0, 0.2).advice)
    assert "verdict: high variance" in str(fd.diagnose(0.01, 0.11))


@pytest.mark.parametrize("kw, match", [
    (dict(train_error=-0.1, dev_error=0.1), "train_error=-0.1"),
    (dict(train_error=0.1, dev_error=11.0), "dev_error=11.0"),
    (dict(train_error=0.1, dev_error=0.1, bayes_error=float("nan")), "bayes_error=nan"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        fd.diagnose(**kw)


def test_model_diagnose_uses_error_rates():
    X, y = make_moons(200, seed=0)
    model = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    d = model.diagnose(train=(X[:100], y[:100]), dev=(X[100:], y[100:]))
    assert d.train_error == pytest.approx(1 - model.evaluate(X[:100], y[:100])["accuracy"])
    assert d.dev_error == pytest.approx(1 - model.evaluate(X[100:], y[100:])["accuracy"])
    with pytest.raises(ValueError, match="train must be a tuple"):
        model.diagnose(train=X, dev=(X, y))


def test_advice_is_not_repeated():
    """High bias and high variance share "try another architecture": it is said once."""
    d = fd.diagnose(0.15, 0.30)
    assert len(d.advice) == len(set(d.advice)) == 5
    assert str(d).count("try another architecture") == 1


def test_dev_error_below_train_error_is_not_printed_as_a_negative_variance():
    d = fd.diagnose(0.10, 0.08)
    assert d.variance == pytest.approx(-0.02) and d.verdict == "high bias"
    text = str(d)
    assert "-2.00%" not in text and "variance 0 (dev error is 2.00% below train error)" in text
    assert "data mismatch 0 (dev error is 1.00% below train-dev error)" in \
        str(fd.diagnose(0.01, 0.02, train_dev_error=0.03))
