"""Gradient clipping (``global_clipnorm=`` / ``clipvalue=`` on every optimizer).

* clipping is fused into the update kernels (no clip kernel, no clipped-gradient buffer): the
  cpu kernels against the reference with clipping are in tests/test_optim.py, the cuda ones
  under the simulator in tests/cuda_sim; here the clipped gradient the update applies (serial
  and parallel paths, NaN handling) and the optimizers' buffers;
* the global norm after clipping is bounded exactly; L2 and weight decay come after clipping;
* PyTorch parity: ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` before
  ``opt.step()`` on a fixed problem, against goldens recorded from torch 2.13
  (``tests/golden/clip_torch.npz``; regenerate with ``python tests/test_clipping.py``), and
  against torch itself, live, when it is installed;
* options survive ``state_dict`` / checkpoints; the whole-epoch kernel is bypassed; bad values.
"""

import os

import numpy as np
import pytest

import fastdl as fd
from fastdl import config
from fastdl.kernels.cpu import optim as cpu_optim
from fastdl.kernels.reference import optim as ref_optim
from fastdl.kernels.reference.reductions import sum_squares as ref_sum_squares

#: an empty bfloat16 weight shadow: the update kernels compute without mixed precision here
#: (tests/test_precision.py covers it)
NO_SHADOW = np.zeros(0, np.uint16)

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN_PATH = os.path.join(HERE, "golden", "clip_torch.npz")
BACKENDS = ["numpy", "cpu"]
DTYPES = [np.float32, np.float64]

# --- the fixed problem shared with the golden recorder -------------------------------------
N, N_W, T = 13, 9, 8
SPLITS = (6, 9)                  # three torch tensors: [0:6] [6:9] (weights), [9:13] (biases)
SEED = 20261126

# name -> (torch class, torch kwargs, global_clipnorm, clipvalue, L2 on the weight prefix)
CASES = {
    "sgd_norm": ("SGD", dict(lr=0.1), 1.0, None, 0.0),
    "sgd_wd_value": ("SGD", dict(lr=0.1, weight_decay=0.05), None, 0.2, 0.0),
    "momentum_norm_value": ("SGD", dict(lr=0.05, momentum=0.9), 2.0, 0.3, 0.0),
    "rmsprop_value": ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-8), None, 0.5, 0.0),
    "adam_norm_l2": ("Adam", dict(lr=0.01), 1.0, None, 0.1),
    "adamw_norm": ("AdamW", dict(lr=0.01, weight_decay=0.1), 0.5, None, 0.0),
    "adam_norm_inactive": ("Adam", dict(lr=0.01), 1e3, None, 0.0),
}


def problem(dtype):
    rng = np.random.default_rng(SEED)
    p0 = rng.standard_normal(N)
    target = rng.standard_normal(N)
    noise = 5.0 * rng.standard_normal((T, N))
    return p0.astype(dtype), target.astype(dtype), noise.astype(dtype)


def gradient(p, t, target, noise):
    """Large gradients (norm ~20) so the clipping bites."""
    return (3.0 * (p - target) + noise[t]).astype(p.dtype)


def fastdl_optimizer(case, backend):
    cls, kw, clipnorm, clipvalue, _ = CASES[case]
    clip = dict(global_clipnorm=clipnorm, clipvalue=clipvalue, backend=backend)
    if cls == "SGD" and "momentum" in kw:
        return fd.optim.Momentum(lr=kw["lr"], beta=kw["momentum"], form="pytorch", **clip)
    if cls == "SGD":
        return fd.optim.SGD(lr=kw["lr"], weight_decay=kw.get("weight_decay", 0.0), **clip)
    if cls == "RMSprop":
        return fd.optim.RMSprop(lr=kw["lr"], beta=kw["alpha"], eps=kw["eps"], **clip)
    if cls == "Adam":
        return fd.optim.Adam(lr=kw["lr"], **clip)
    return fd.optim.AdamW(lr=kw["lr"], weight_decay=kw["weight_decay"], **clip)


def run_fastdl(case, dtype, backend):
    p, target, noise = problem(dtype)
    opt = fastdl_optimizer(case, backend)
    l2 = CASES[case][4]
    norms = []
    for t in range(T):
        opt.step(p, gradient(p, t, target, noise), l2=l2, n_l2=N_W if l2 else 0)
        norms.append(opt.last_grad_norm if CASES[case][2] is not None else np.nan)
    return p, np.array(norms)


def run_torch(case, dtype):
    """The same trajectory in PyTorch: clip_grad_norm_ then clip_grad_value_, then step();
    the loss's L2 on the weights is a parameter group with weight_decay (added in step(),
    after clipping, as fastdl adds it inside its update kernel)."""
    import torch
    cls, kw, clipnorm, clipvalue, l2 = CASES[case]
    p, target, noise = problem(dtype)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    parts = [torch.tensor(a, dtype=tdt, requires_grad=True) for a in np.split(p, SPLITS)]
    groups = [{"params": parts[:2]}, {"params": parts[2:]}]
    if l2:
        groups[0]["weight_decay"] = l2
    opt = getattr(torch.optim, cls)(groups, **kw)
    norms = []
    for t in range(T):
        cur = np.concatenate([x.detach().numpy() for x in parts])
        g = gradient(cur, t, target, noise)
        for x, gx in zip(parts, np.split(g, SPLITS)):
            x.grad = torch.tensor(gx, dtype=tdt)
        if clipnorm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(parts, clipnorm)))
        else:
            norms.append(np.nan)
        if clipvalue is not None:
            torch.nn.utils.clip_grad_value_(parts, clipvalue)
        opt.step()
    return np.concatenate([x.detach().numpy() for x in parts]), np.array(norms)


def torch_clip_only(g, max_norm, clip_value):
    """torch's clipping functions on one flat gradient split into three tensors."""
    import torch
    tdt = torch.float32 if g.dtype == np.float32 else torch.float64
    parts = [torch.zeros(len(a), dtype=tdt, requires_grad=True) for a in np.split(g, SPLITS)]
    for x, gx in zip(parts, np.split(g, SPLITS)):
        x.grad = torch.tensor(gx, dtype=tdt)
    if np.isfinite(max_norm):
        torch.nn.utils.clip_grad_norm_(parts, max_norm)
    if np.isfinite(clip_value):
        torch.nn.utils.clip_grad_value_(parts, clip_value)
    return np.concatenate([x.grad.numpy() for x in parts])


CLIP_ONLY = [(1.0, np.inf), (1e3, np.inf), (np.inf, 0.4), (2.0, 0.3)]


def record_golden(path=GOLDEN_PATH):
    import torch
    out = {"torch_version": np.array(torch.__version__)}
    for dtype in DTYPES:
        dn = np.dtype(dtype).name
        for case in CASES:
            p, norms = run_torch(case, dtype)
            out[f"{case}/{dn}/params"], out[f"{case}/{dn}/norms"] = p, norms
        p0, target, noise = problem(dtype)
        g = gradient(p0, 0, target, noise)
        for i, (mn, cv) in enumerate(CLIP_ONLY):
            out[f"clip{i}/{dn}"] = torch_clip_only(g, mn, cv)
    np.savez(path, **out)
    return path


GOLDEN = dict(np.load(GOLDEN_PATH, allow_pickle=False)) if os.path.exists(GOLDEN_PATH) else {}
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


# --- the clipped gradient inside the update kernels ------------------------------------------
def clipped_by_update(k, g, sq, max_norm, clip_value):
    """The gradient an update kernel applies after clipping: ``sgd_update`` with lr = 1 and no
    decay on zero parameters writes exactly ``-clamp(g * coef, -c, c)``."""
    p = np.zeros_like(g)
    k.sgd_update(p, NO_SHADOW, g, 1.0, 0.0, sq, max_norm, clip_value, 0.0, 0)
    return -p


def _kernel_case(rng, n, dtype, nan=False):
    """A gradient (a NaN in the middle when ``nan``) and its squared norm (float64)."""
    g = (10 * rng.standard_normal(n)).astype(dtype)
    if nan:
        g[n // 2] = np.nan
    sq = np.zeros(1)
    ref_sum_squares(sq, g)
    return g, sq


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("parallel", [False, True])
def test_cpu_inline_clipping_matches_reference(dtype, parallel, monkeypatch):
    if parallel:
        monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 1)
        monkeypatch.setattr(cpu_optim, "_BLOCK", 7)  # several blocks, a partial last one
    rng = np.random.default_rng(3)
    for n in (1, 7, 100):
        for max_norm, clip_value in [(1.0, np.inf), (1e9, np.inf), (np.inf, 2.0), (5.0, 1.5),
                                     (np.inf, np.inf)]:
            for nan in (False, True):
                g, sq = _kernel_case(rng, n, dtype, nan)
                g_copy = g.copy()
                ref = clipped_by_update(ref_optim, g, sq, max_norm, clip_value)
                out = clipped_by_update(cpu_optim, g, sq, max_norm, clip_value)
                np.testing.assert_allclose(out, ref, rtol=RTOL[dtype], atol=0)
                np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
                np.testing.assert_array_equal(g, g_copy)        # grads never modified
                if not nan and np.isinf(max_norm):              # value clip (or none): exact
                    np.testing.assert_array_equal(out, np.clip(g, -clip_value, clip_value))


def test_inline_clipping_semantics():
    g = np.array([3.0, -4.0, 0.5])                              # norm 5
    sq = np.array([25.0])
    for k in (ref_optim, cpu_optim):
        def clip(*a):
            return clipped_by_update(k, *a)
        np.testing.assert_allclose(clip(g, sq, 1.0, np.inf), g / (5.0 + 1e-6), rtol=1e-15)
        np.testing.assert_array_equal(clip(g, sq, 10.0, np.inf), g)   # inactive: exactly g
        np.testing.assert_array_equal(clip(g, sq, np.inf, 1.0), [1.0, -1.0, 0.5])  # by value
        np.testing.assert_allclose(clip(g, sq, 2.5, 0.3),             # norm first, then value
                                   [0.3, -0.3, 0.5 * 2.5 / (5 + 1e-6)], rtol=1e-15)
        assert np.isnan(clip(g, np.array([np.nan]), 1.0, np.inf)).all()  # NaN norm (PyTorch)
        np.testing.assert_array_equal(clip(np.array([np.nan, 9.0, -9.0]), sq, np.inf, 1.0),
                                      [np.nan, 1.0, -1.0])
        # norm clipping off: sum_sq is not read (a poisoned value changes nothing)
        np.testing.assert_array_equal(clip(g, np.array([np.nan]), np.inf, 1.0), [1.0, -1.0, 0.5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_clipping_allocates_no_gradient_buffer(backend):
    """The optimizer owns only its state and the (1,) float64 squared norm: the clipped
    gradient never exists as a buffer (one fused pass)."""
    n = 50
    opt = fd.optim.Adam(lr=0.01, global_clipnorm=1.0, clipvalue=0.5, backend=backend)
    p, g = np.ones(n), np.linspace(-30, 30, n)
    opt.step(p, g)
    owned = [a for a in vars(opt).values() if isinstance(a, np.ndarray)]
    assert sorted(a.size for a in owned) == [1, 6, 2 * n]   # sum_sq, hyper, state (m, v)
    assert opt.last_grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-12)


# --- the optimizers --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_global_norm_is_bounded_exactly(backend, dtype):
    rng = np.random.default_rng(5)
    for max_norm in (0.01, 1.0, 7.0):
        p0 = rng.standard_normal(1000).astype(dtype)
        g = (rng.standard_normal(1000) * 3).astype(dtype)          # norm ~95
        p = p0.copy()
        opt = fd.optim.SGD(lr=1.0, global_clipnorm=max_norm, backend=backend)
        opt.step(p, g)
        step = (p0.astype(np.float64) - p.astype(np.float64))
        total = np.linalg.norm(g.astype(np.float64))
        assert opt.last_grad_norm == pytest.approx(total, rel=1e-6)
        eps = 4 * np.finfo(dtype).eps
        # the update is the gradient scaled by max_norm / (total + 1e-6): norm just under it
        assert np.linalg.norm(step) <= max_norm * (1 + eps) + 2 * np.finfo(dtype).eps
        np.testing.assert_allclose(np.linalg.norm(step), max_norm * total / (total + 1e-6),
                                   rtol=20 * eps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_and_weight_decay_come_after_clipping(backend):
    rng = np.random.default_rng(6)
    p0, g = rng.standard_normal(20), 10 * rng.standard_normal(20)
    p = p0.copy()
    opt = fd.optim.SGD(lr=0.1, weight_decay=0.01, clipvalue=0.5, backend=backend)
    opt.step(p, g, l2=0.2, n_l2=12)
    eff = np.clip(g, -0.5, 0.5) + 0.01 * p0
    eff[:12] += 0.2 * p0[:12]
    np.testing.assert_allclose(p, p0 - 0.1 * eff, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_pytorch_golden(case, dtype, backend):
    dn = np.dtype(dtype).name
    assert f"{case}/{dn}/params" in GOLDEN, "tests/golden/clip_torch.npz lacks this case; " \
        "regenerate it: python tests/test_clipping.py"
    p, norms = run_fastdl(case, dtype, backend)
    rtol = RTOL[dtype] * (10 if dtype == np.float32 else 1)
    np.testing.assert_allclose(p, GOLDEN[f"{case}/{dn}/params"], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(norms, GOLDEN[f"{case}/{dn}/norms"], rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("i", range(len(CLIP_ONLY)))
def test_clip_kernel_matches_pytorch_golden(i, dtype):
    dn = np.dtype(dtype).name
    p, target, noise = problem(dtype)
    g = gradient(p, 0, target, noise)
    max_norm, clip_value = CLIP_ONLY[i]
    sq = np.zeros(1)
    fd.get_backend("cpu").k.sum_squares(sq, g)
    out = clipped_by_update(cpu_optim, g, sq, max_norm, clip_value)
    np.testing.assert_allclose(out, GOLDEN[f"clip{i}/{dn}"], rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("case", ["sgd_norm", "momentum_norm_value", "adam_norm_l2"])
def test_matches_pytorch_live(case):
    pytest.importorskip("torch")
    for dtype in DTYPES:
        p, norms = run_fastdl(case, dtype, "cpu")
        p_t, norms_t = run_torch(case, dtype)
        rtol = RTOL[dtype] * (10 if dtype == np.float32 else 1)
        np.testing.assert_allclose(p, p_t, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(norms, norms_t, rtol=rtol)


def test_fit_uses_the_step_path_and_inactive_clipping_changes_nothing():
    X, y = fd.data.make_moons(300, noise=0.2, seed=0)

    def trained(**clip):
        model = fd.Sequential([fd.Dense(5, activation="relu"), fd.Dense(1, activation="sigmoid")],
                              input_dim=2, dtype="float64", seed=2)
        opt = fd.optim.Adam(lr=0.01, **clip)
        model.fit(X, y, optimizer=opt, epochs=3, batch_size=32, verbose=0)
        return model, opt
    base, opt0 = trained()
    assert opt0.fused_spec() is not None                       # the whole-epoch kernel ran
    loose, opt1 = trained(global_clipnorm=1e6, clipvalue=1e6)
    assert opt1.fused_spec() is None and opt1.clipping
    for a, b in zip(base.get_weights(), loose.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    tight, _ = trained(global_clipnorm=1e-3)                   # tight clipping: other weights
    assert not np.allclose(base.get_weights()[0], tight.get_weights()[0])


def test_clipping_survives_state_dict_and_checkpoints(tmp_path):
    opt = fd.optim.RMSprop(lr=0.01, global_clipnorm=2.5, clipvalue=0.1)
    d = opt.state_dict()
    assert float(d["global_clipnorm"]) == 2.5 and float(d["clipvalue"]) == 0.1
    other = fd.optim.RMSprop()
    other.load_state_dict(d)
    assert (other.global_clipnorm, other.clipvalue) == (2.5, 0.1)
    off = fd.optim.RMSprop(global_clipnorm=1.0)
    off.load_state_dict(fd.optim.RMSprop().state_dict())        # None is saved as NaN
    assert off.global_clipnorm is None and not off.clipping
    legacy = {k: v for k, v in d.items() if k not in ("global_clipnorm", "clipvalue")}
    keep = fd.optim.RMSprop(global_clipnorm=3.0)
    keep.load_state_dict(legacy)                                # older states: unchanged
    assert keep.global_clipnorm == 3.0
    assert "global_clipnorm=2.5" in repr(opt) and "clipvalue=0.1" in repr(opt)

    X, y = fd.data.make_moons(128, noise=0.2, seed=0)
    model = fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=0)
    model.fit(X, y, optimizer=fd.optim.Adam(global_clipnorm=0.7), epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fd.load(tmp_path / "m.npz")
    assert isinstance(loaded.optimizer, fd.optim.Adam)
    assert loaded.optimizer.global_clipnorm == 0.7 and loaded.optimizer.clipvalue is None
    # resuming: the optimizer given keeps its own clipping (as it keeps its lr); none given:
    # the checkpoint's
    ckpt = tmp_path / "ckpt.npz"
    model.fit(X, y, optimizer=fd.optim.Adam(global_clipnorm=0.7), epochs=1, verbose=0,
              callbacks=[fd.ModelCheckpoint(str(ckpt))])
    mine = fd.optim.Adam(clipvalue=0.05)
    model.fit(X, y, optimizer=mine, epochs=2, verbose=0, resume_from=str(ckpt))
    assert (mine.global_clipnorm, mine.clipvalue) == (None, 0.05) and mine.iterations > 0
    model.fit(X, y, epochs=2, verbose=0, resume_from=str(ckpt))
    assert model.optimizer.global_clipnorm == 0.7


@pytest.mark.parametrize("cls", [fd.optim.SGD, fd.optim.Momentum, fd.optim.RMSprop,
                                 fd.optim.Adam, fd.optim.AdamW])
@pytest.mark.parametrize("name", ["global_clipnorm", "clipvalue"])
@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "1"])
def test_bad_clip_values(cls, name, bad):
    with pytest.raises(ValueError, match=f"{name}={bad!r} is invalid.*None.*> 0"):
        cls(**{name: bad})
    opt = cls()
    with pytest.raises(ValueError, match=name):
        setattr(opt, name, bad)


if __name__ == "__main__":   # regenerate the goldens (needs torch)
    print("wrote", record_golden())
