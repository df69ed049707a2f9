"""fd.data.check_same_distribution: statistics against hand / SciPy values, the stated
false-alarm and detection rates, the report, and bad input."""

import math

import numpy as np
import pytest

import fastdl as fd
from fastdl.data.distribution import ks_2samp, ks_pvalue


def test_statistics_by_hand():
    A = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    B = np.array([[2.0, 1.0], [3.0, 1.0], [4.0, 1.0], [5.0, 1.0], [6.0, 1.0]])
    chk = fd.data.check_same_distribution(A, B)
    # feature 0: means 1.5 vs 4, sample variances 5/3 and 2.5
    assert chk.smd[0] == pytest.approx((1.5 - 4.0) / math.sqrt((5 / 3 + 2.5) / 2))
    # empirical CDFs: x=1: 2/4 - 0; x=2: 3/4 - 1/5; x=3: 4/4 - 2/5 = 0.6 (the largest gap)
    assert chk.ks[0] == pytest.approx(0.6)
    assert chk.smd[1] == 0.0 and chk.ks[1] == 0.0 and chk.p_values[1] == 1.0   # constant
    t = math.sqrt(4 * 5 / 9) * 0.6
    assert chk.p_values[0] == pytest.approx(ks_pvalue(t))
    assert chk.critical_distance == pytest.approx(
        math.sqrt(-math.log(0.025 / 2) / 2) * math.sqrt(9 / 20))


def test_kolmogorov_tail_values():
    # Q(t) = 2 sum (-1)^(k-1) exp(-2 k^2 t^2): classic table values (alpha 0.05 at t=1.3581)
    assert ks_pvalue(1.3581) == pytest.approx(0.05, abs=2e-5)
    assert ks_pvalue(1.6276) == pytest.approx(0.01, abs=2e-5)
    assert ks_pvalue(0.0) == 1.0 and ks_pvalue(10.0) == pytest.approx(0.0, abs=1e-80)
    # the two series agree where they switch
    lo = 1.0 - math.sqrt(2 * math.pi) / 1.18 * sum(
        math.exp(-(2 * k - 1) ** 2 * math.pi ** 2 / (8 * 1.18 ** 2)) for k in range(1, 12))
    assert ks_pvalue(1.18) == pytest.approx(lo, rel=1e-10)


def test_matches_scipy_ks_2samp():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n, m, shift in ((50, 70, 0.0), (300, 200, 0.2), (2000, 1500, 0.05), (40, 40, 1.0)):
        a, b = rng.standard_normal(n), rng.standard_normal(m) + shift
        d, p = ks_2samp(a, b)
        ref = stats.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, rel=1e-12)
        # the limit law; SciPy's "asymp" uses the finite-n law kstwo(round(nm/(n+m))), which
        # tends to it: close for large samples
        assert p == pytest.approx(stats.kstwobign.sf(math.sqrt(n * m / (n + m)) * d),
                                  rel=1e-9, abs=1e-300)
        if n >= 1000:
            assert p == pytest.approx(ref.pvalue, abs=0.01)
    a = rng.integers(0, 4, 300).astype(float)                  # ties
    b = rng.integers(0, 5, 250).astype(float)
    assert ks_2samp(a, b)[0] == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_false_alarm_and_detection_rates():
    """200 seeded repetitions, n = m = 2000, two features, alpha = 0.05: unshifted pairs are
    called different at most ~alpha of the time, a 0.3-sd shift of one feature >= 95%."""
    rng = np.random.default_rng(20261126)
    alarms = detections = 0
    reps = 200
    for _ in range(reps):
        A = rng.standard_normal((2000, 2))
        B = rng.standard_normal((2000, 2))
        alarms += not fd.data.check_same_distribution(A, B).same
        B[:, 1] += 0.3
        chk = fd.data.check_same_distribution(A, B)
        detections += (not chk.same) and chk.different == [1]
    assert alarms / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)     # ~alpha (<= 0.096)
    assert detections / reps >= 0.95


def test_shape_difference_with_equal_means_is_caught():
    """KS sees a change of spread that the mean difference misses."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3000, 1))
    B = 2.0 * rng.standard_normal((3000, 1))
    chk = fd.data.check_same_distribution(A, B)
    assert abs(chk.smd[0]) < 0.1 and not chk.same


def test_report_names_the_most_different_features():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((1000, 12))
    B = rng.standard_normal((1000, 12))
    B[:, 7] += 1.0
    B[:, 2] += 0.4
    names = [f"f{j}" for j in range(12)]
    chk = fd.data.check_same_distribution(A, B, names=names, labels=("dev", "test"), top=3)
    assert not chk and chk.different[:2] == [7, 2]
    text = chk.report()
    lines = text.splitlines()
    assert lines[0].startswith("dev and test differ in 2 of 12 feature(s)")
    assert lines[3].startswith("f7") and "DIFFERS" in lines[3] and lines[4].startswith("f2")
    assert "9 more feature(s)" in text and str(chk) == text
    same = fd.data.check_same_distribution(A[:500], A[500:], labels=("dev", "test"))
    assert same and "look like one distribution" in same.report()


@pytest.mark.parametrize("A,B,kw,err,match", [
    (np.zeros((5, 3)), np.zeros((5, 4)), {}, ValueError,
     r"A has 3 features \(shape \(5, 3\)\) but B has 4"),
    (np.zeros(5), np.zeros((5, 1)), {}, ValueError, r"A has shape \(5,\).*reshape\(-1, 1\)"),
    (np.zeros((1, 2)), np.zeros((5, 2)), {}, ValueError, "A has 1 example"),
    (np.array([[0.0], [np.nan]]), np.zeros((5, 1)), {}, ValueError, "A contains 1 NaN"),
    (np.zeros((5, 1)), np.array([["a"], ["b"]]), {}, TypeError, "B has dtype"),
    (np.zeros((5, 1)), np.zeros((5, 1)), dict(alpha=0.0), ValueError, "alpha=0.0"),
    (np.zeros((5, 1)), np.zeros((5, 1)), dict(alpha=1), ValueError, r"alpha=1 .*\(0, 1\)"),
    (np.zeros((5, 2)), np.zeros((5, 2)), dict(names=["a"]), ValueError, "names has 1"),
    (np.zeros((5, 1)), np.zeros((5, 1)), dict(top=0), ValueError, "top=0"),
    (np.zeros((5, 1)), np.zeros((5, 1)), dict(labels="dev"), ValueError, "labels='dev'"),
])
def test_bad_input(A, B, kw, err, match):
    with pytest.raises(err, match=match):
        fd.data.check_same_distribution(A, B, **kw)
