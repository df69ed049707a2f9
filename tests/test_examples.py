"""Smoke test of examples/: each script runs in small mode (FASTDL_EXAMPLES_SMALL=1), prints its
result table and, with matplotlib installed, writes its picture. Run in this process (runpy) so
the jitted kernels compile once for all of them."""

import os
import runpy
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
SCRIPTS = sorted(f for f in os.listdir(EXAMPLES) if f[:2].isdigit() and f.endswith(".py"))

#: What each example's table must show (its point, not just that it ran).
EXPECT = {
    "01_initialization.py": ["zeros", "0.6931      0.6931     0.5000    0.5000", "he"],
    "02_regularization.py": ["none", "L2 (lambda=0.7)", "dropout (keep_prob=0.7)"],
    "03_gradient_checking.py": ["correct network", "passed", "planted bug in layer 2", "FAILED",
                                "W1 ("],
    "04_optimizers.py": ["GD", "momentum + decay", "Adam + decay"],
    "05_batch_norm.py": ["BatchNorm, lr=0.01", "plain, lr=1.0"],
    "06_softmax.py": ["linear softmax", "confusion matrix", "rows sum to 1"],
    "07_random_search.py": ["coarse", "fine", "dev acc"],
    "08_out_of_core.py": ["streamed (.npy paths)", "in memory (np.load)", "peak RSS"],
    "09_vanishing_exploding.py": ["tiny N(0, 0.01^2)  vanishing", "large N(0, 1)      exploding",
                                  "large + clipping   exploding", "LeCun              healthy"],
    "10_sklearn_dropin.py": ["sklearn MLPClassifier", "fastdl + dropout", "fastdl + batchnorm",
                             "GridSearchCV over alpha", "best alpha"],
}


def test_every_example_is_covered():
    assert SCRIPTS == sorted(EXPECT)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_small(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTDL_EXAMPLES_SMALL", "1")
    monkeypatch.setenv("FASTDL_EXAMPLES_OUT", str(tmp_path))
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.setattr(sys, "argv", [script])
    sys.modules.pop("_common", None)                   # re-read the environment
    runpy.run_path(os.path.join(EXAMPLES, script), run_name="__main__")
    out = capsys.readouterr().out
    for text in EXPECT[script]:
        assert text in out, f"{script}: {text!r} missing from\n{out}"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no picture" in out
    else:
        png = os.path.join(str(tmp_path), script[:-3] + ".png")
        assert open(png, "rb").read(4) == b"\x89PNG"
