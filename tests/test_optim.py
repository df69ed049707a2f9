"""Optimizers, their kernels, schedules and EWAs.

* PyTorch parity: parameters *and* state after 20 steps on a fixed problem equal golden values
  recorded from torch (tests/golden/make_optim_golden.py), always; and torch itself, live, when
  it is installed.
* An independent NumPy implementation of the course's formulas.
* cpu kernels vs the reference: every registered optimizer kernel runs its declared cases in
  ``tests/test_kernels_vs_reference.py`` (float32/float64, serial and parallel paths, L2 prefix,
  clipping, NaN gradients); here only hypothesis fuzzing on top, and the fused-epoch dispatchers
  vs the kernels.
* Schedules and EWAs against values computed by hand; every error path.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdl import config
from fastdl.backend import get_backend
from fastdl.kernels import KERNELS, OPTIMIZERS
from fastdl.kernels.cpu import optim as cpu_optim
from fastdl.kernels.reference import epoch as ref_epoch
from fastdl.kernels.reference import optim as ref_optim
from fastdl.optim import (EWA, SGD, Adam, AdamW, Constant, ExponentialDecay, InverseTimeDecay,
                          Lambda, Momentum, PiecewiseConstant, RMSprop, SqrtDecay,
                          StaircaseDecay, as_schedule, ewa)

#: an empty bfloat16 weight shadow: the update kernels compute without mixed precision here
#: (tests/test_precision.py covers it)
NO_SHADOW = np.zeros(0, np.uint16)

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "make_optim_golden", os.path.join(HERE, "golden", "make_optim_golden.py"))
golden_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_script)
GOLDEN = dict(np.load(os.path.join(HERE, "golden", "optim_torch.npz"), allow_pickle=False))
PROBLEM = (GOLDEN["p0"], GOLDEN["c"], GOLDEN["target"], GOLDEN["noise"])
N_W, T = golden_script.N_W, golden_script.T

BACKENDS = ["numpy", "cpu"]
DTYPES = [np.float32, np.float64]
#: (rtol, atol) per dtype against torch / the course implementation (20 steps).
TOL = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-14)}


def grad_at(p, t):
    return golden_script.gradient(p, t, PROBLEM, p.dtype.type)


# --------------------------------------------------------------------------- torch parity ----
def _torch_first_step_velocity(opt, dtype):
    """torch's SGD(momentum=b, dampening=b) sets v = g_1 on its first step, where the course
    sets v = (1-b) g_1: it behaves as the course's EWA started from v_0 = g_1, since
    b * g_1 + (1-b) * g_1 = g_1. Loading v_0 = g_1 reproduces torch's default exactly."""
    g1 = grad_at(PROBLEM[0].astype(dtype), 0)
    d = opt.state_dict()
    d["state"] = g1[None, :].copy()
    opt.load_state_dict(d)


#: case -> (our optimizer factory, L2 on the weight prefix, {step: lr}, state initialiser).
#: Keys and settings mirror golden_script.CASES (PyTorch's names and conventions).
CASES = {
    "sgd": (lambda bk: SGD(lr=0.1, backend=bk), 0.0, {}, None),
    "sgd_wd": (lambda bk: SGD(lr=0.1, weight_decay=0.05, backend=bk), 0.0, {}, None),
    "sgd_l2": (lambda bk: SGD(lr=0.1, backend=bk), 0.05, {}, None),
    "momentum_pytorch": (lambda bk: Momentum(lr=0.05, beta=0.9, form="pytorch", backend=bk),
                         0.0, {}, None),
    "momentum_ewa": (lambda bk: Momentum(lr=0.05, beta=0.9, backend=bk), 0.0, {}, None),
    "momentum_ewa_torch_default": (lambda bk: Momentum(lr=0.05, beta=0.9, backend=bk), 0.0, {},
                                   _torch_first_step_velocity),
    "nesterov": (lambda bk: Momentum(lr=0.05, beta=0.9, nesterov=True, form="pytorch",
                                     backend=bk), 0.0, {}, None),
    "nesterov_wd_l2": (lambda bk: Momentum(lr=0.05, beta=0.8, nesterov=True, form="pytorch",
                                           weight_decay=0.01, backend=bk), 0.05, {}, None),
    "rmsprop": (lambda bk: RMSprop(lr=0.01, beta=0.99, eps=1e-8, backend=bk), 0.0, {}, None),
    "rmsprop_wd_l2": (lambda bk: RMSprop(lr=0.01, beta=0.9, eps=1e-6, weight_decay=0.01,
                                         backend=bk), 0.05, {}, None),
    "adam": (lambda bk: Adam(lr=0.01, backend=bk), 0.0, {}, None),
    "adam_wd": (lambda bk: Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1,
                                backend=bk), 0.0, {}, None),
    "adam_l2": (lambda bk: Adam(lr=0.01, backend=bk), 0.1, {}, None),
    "adam_lr_change": (lambda bk: Adam(lr=0.01, backend=bk), 0.0, {10: 0.003, 15: 0.02}, None),
    "adamw": (lambda bk: AdamW(lr=0.01, weight_decay=0.1, backend=bk), 0.0, {}, None),
    "adamw_l2": (lambda bk: AdamW(lr=0.01, beta1=0.85, beta2=0.995, weight_decay=0.2,
                                  backend=bk), 0.05, {}, None),
}


def run_ours(case, dtype, backend, steps=T):
    make, l2, lr_change, init = CASES[case]
    opt = make(backend)
    p = PROBLEM[0].astype(dtype)
    if init is not None:
        opt.prepare(p.shape[0], dtype, get_backend(backend))
        init(opt, dtype)
    for t in range(steps):
        if t in lr_change:
            opt.lr = lr_change[t]
        g = grad_at(p, t)
        opt.step(p, g, l2=l2, n_l2=N_W if l2 else 0)
    return p, opt


def assert_matches(p, opt, params, state, dtype, what):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(p, params, rtol=rtol, atol=atol, err_msg=f"{what}: params")
    assert set(opt.state) == {k for k in state if k != "step"}, what
    for name, row in opt.state.items():
        np.testing.assert_allclose(row, state[name], rtol=rtol, atol=atol,
                                   err_msg=f"{what}: state {name}")
    if "step" in state:
        assert opt.iterations == int(state["step"]) == T


def test_cases_mirror_the_golden_script():
    assert set(CASES) == set(golden_script.CASES)
    assert all(f"{c}/float64/params" in GOLDEN for c in CASES), "regenerate the goldens"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_golden(case, dtype, backend):
    key = f"{case}/{np.dtype(dtype).name}"
    params = GOLDEN[f"{key}/params"]
    state = {k.rsplit("/", 1)[1]: v for k, v in GOLDEN.items() if k.startswith(f"{key}/state/")}
    p, opt = run_ours(case, dtype, backend)
    assert p.dtype == dtype and all(r.dtype == dtype for r in opt.state.values())
    assert_matches(p, opt, params, state, dtype, f"{case} {backend}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_live(case, dtype):
    pytest.importorskip("torch")
    params, state = golden_script.run_torch(case, dtype)
    p, opt = run_ours(case, dtype, "cpu")
    assert_matches(p, opt, params, state, dtype, f"{case} live")
    # the committed goldens are what this torch produces (same build: tight tolerance)
    key = f"{case}/{np.dtype(dtype).name}"
    np.testing.assert_allclose(GOLDEN[f"{key}/params"], params, rtol=TOL[dtype][0] / 10,
                               atol=TOL[dtype][1] / 10)


def test_torch_default_first_step_differs_from_the_course():
    """Without the v_0 = g_1 seeding, the course's EWA momentum is *not* torch's dampened SGD:
    the first velocity differs by b * g_1, which decays as b^t but moves the trajectory."""
    p, _ = run_ours("momentum_ewa", np.float64, "cpu")
    torch_default = GOLDEN["momentum_ewa_torch_default/float64/params"]
    seeded = GOLDEN["momentum_ewa/float64/params"]
    np.testing.assert_allclose(p, seeded, rtol=1e-11, atol=1e-13)
    assert np.abs(p - torch_default).max() > 1e-3


def test_adam_decoupled_flag_is_adamw():
    a = Adam(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)
    b = AdamW(lr=0.01, weight_decay=0.1)
    pa, pb = PROBLEM[0].copy(), PROBLEM[0].copy()
    for t in range(5):
        a.step(pa, grad_at(pa, t))
        b.step(pb, grad_at(pb, t))
    np.testing.assert_array_equal(pa, pb)


# ------------------------------------------------------------- the course's formulas ----
def course_run(kind, steps=T, lr=0.01, beta=0.9, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0,
               weight_decay=0.0):
    """Written from the course's update equations (week 2), float64, one layer (W, b) split
    at N_W; L2 adds (lambda/m) W = l2 * W to dW only."""
    p = PROBLEM[0].copy()
    v = np.zeros_like(p)
    s = np.zeros_like(p)
    for t in range(1, steps + 1):
        grad = grad_at(p, t - 1)
        dW, db = grad[:N_W] + l2 * p[:N_W], grad[N_W:]
        W, b = p[:N_W], p[N_W:]
        d = np.concatenate([dW, db])
        if kind == "gd":
            W_new, b_new = W - lr * dW, b - lr * db
        elif kind == "momentum":
            v = beta * v + (1 - beta) * d
            W_new, b_new = W - lr * v[:N_W], b - lr * v[N_W:]
        elif kind == "rmsprop":
            s = beta * s + (1 - beta) * d ** 2
            step = d / (np.sqrt(s) + eps)
            W_new, b_new = W - lr * step[:N_W], b - lr * step[N_W:]
        elif kind in ("adam", "adamw"):
            v = beta1 * v + (1 - beta1) * d
            s = beta2 * s + (1 - beta2) * d ** 2
            v_corrected = v / (1 - beta1 ** t)
            s_corrected = s / (1 - beta2 ** t)
            step = v_corrected / (np.sqrt(s_corrected) + eps)
            if kind == "adamw":   # decoupled decay on the weights before the update
                step = step + weight_decay * p
            W_new, b_new = W - lr * step[:N_W], b - lr * step[N_W:]
        p = np.concatenate([W_new, b_new])
    return p, v, s


COURSE = {
    "gd": (lambda bk: SGD(lr=0.1, backend=bk), dict(lr=0.1, l2=0.3), ()),
    "momentum": (lambda bk: Momentum(lr=0.1, beta=0.9, backend=bk), dict(lr=0.1, l2=0.3),
                 ("velocity",)),
    "rmsprop": (lambda bk: RMSprop(lr=0.01, beta=0.9, eps=1e-8, backend=bk),
                dict(lr=0.01, beta=0.9, l2=0.3), ("square_avg",)),
    "adam": (lambda bk: Adam(lr=0.02, backend=bk), dict(lr=0.02, l2=0.3), ("m", "v")),
    "adamw": (lambda bk: AdamW(lr=0.02, weight_decay=0.05, backend=bk),
              dict(lr=0.02, weight_decay=0.05), ("m", "v")),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(COURSE))
def test_matches_course_formulas(kind, backend):
    make, kw, rows = COURSE[kind]
    p_ref, v_ref, s_ref = course_run(kind, **kw)
    opt = make(backend)
    p = PROBLEM[0].copy()
    for t in range(T):
        opt.step(p, grad_at(p, t), l2=kw.get("l2", 0.0), n_l2=N_W)
    np.testing.assert_allclose(p, p_ref, rtol=1e-11, atol=1e-13)
    course_names = {"velocity": v_ref, "square_avg": s_ref, "m": v_ref, "v": s_ref}
    assert set(opt.state) == set(rows)
    for name in rows:
        np.testing.assert_allclose(opt.state[name], course_names[name], rtol=1e-11, atol=1e-13)


# --------------------------------------------------------- cpu kernels vs reference ----
#: (max_norm, clip_value) of the inline gradient clipping; inf = off
NO_CLIP = (np.inf, np.inf)
CLIPS = [(1.0, np.inf), (1e9, np.inf), (np.inf, 0.5), (2.0, 0.3)]


def _kernel_args(name, rng, n, dtype, n_l2, flavour, clip=NO_CLIP):
    """(outputs to compare, full argument tuple) for optimizer kernel ``name``; ``clip`` is
    (max_norm, clip_value), the squared norm is that of the gradient (gradients of scale 10 so
    that the clipping bites)."""
    params = rng.standard_normal(n).astype(dtype)
    grads = (rng.standard_normal(n) * (1 if clip == NO_CLIP else 10)).astype(dtype)
    if flavour == "zeros":
        grads[::2] = 0
    elif flavour == "nan":
        grads[n // 2] = np.nan
    sq = lambda: (rng.standard_normal(n) ** 2).astype(dtype)  # noqa: E731
    l2 = 0.03 if n_l2 else 0.0
    # the squared norm as sum_squares writes it; a poisoned value when norm clipping is off
    # (the kernels must not read it then)
    norm_sq = np.array([np.dot(grads.astype(np.float64), grads.astype(np.float64))
                        if np.isfinite(clip[0]) else -1.0])
    c = (norm_sq, *clip)
    if name == "sgd_update":
        return (params,), (params, NO_SHADOW, grads, 0.1, 0.01, *c, l2, n_l2)
    if name == "momentum_update":
        v = rng.standard_normal(n).astype(dtype)
        nesterov = flavour != "nan"
        return (params, v), (params, NO_SHADOW, v, grads, 0.1, 0.9, 0.9 if nesterov else 0.0, nesterov,
                             0.01, *c, l2, n_l2)
    if name == "rmsprop_update":
        s = sq()
        return (params, s), (params, NO_SHADOW, s, grads, 0.01, 0.9, 1e-8, 0.01, *c, l2, n_l2)
    if name == "adam_update":
        m, v = rng.standard_normal(n).astype(dtype), sq()
        return (params, m, v), (params, NO_SHADOW, m, v, grads, 0.01, 0.9, 0.999, 1e-8, 7, 0.01,
                                0.02, *c, l2, n_l2)
    raise KeyError(name)


KERNEL_NAMES = KERNELS["optim"]
RTOL_KERNEL = {np.float32: 2e-6, np.float64: 1e-14}


def _compare_kernel(name, n, dtype, n_l2, flavour="normal", seed=0, clip=NO_CLIP):
    out_ref, args_ref = _kernel_args(name, np.random.default_rng(seed), n, dtype, n_l2, flavour,
                                     clip)
    out_cpu, args_cpu = _kernel_args(name, np.random.default_rng(seed), n, dtype, n_l2, flavour,
                                     clip)
    grads = args_cpu[len(out_cpu) + 1]   # after the outputs and the (empty) shadow
    grads_before = grads.copy()
    getattr(ref_optim, name)(*args_ref)
    getattr(cpu_optim, name)(*args_cpu)
    np.testing.assert_array_equal(grads, grads_before)      # grads are never modified
    for a, b in zip(out_cpu, out_ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=RTOL_KERNEL[dtype], atol=RTOL_KERNEL[dtype],
                                   err_msg=f"{name} n={n} n_l2={n_l2} {flavour} clip={clip}")
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


def test_kernels_clip_as_pytorch_before_l2():
    """sgd_update with lr = 1 on zero parameters returns -clipped gradient: PyTorch's
    clip_grad_norm_ coefficient max_norm / (norm + 1e-6), then clip_grad_value_; inactive
    clipping is exact; a NaN norm gives NaN everywhere; NaN entries pass the value clip."""
    g = np.array([3.0, -4.0, 0.5])                              # norm 5
    sq = np.array([25.0])
    for k in (ref_optim, cpu_optim):
        def step(grads, sum_sq, max_norm, clip_value):
            p = np.zeros(len(grads))
            k.sgd_update(p, NO_SHADOW, grads, 1.0, 0.0, sum_sq, max_norm, clip_value, 0.0, 0)
            return -p
        np.testing.assert_allclose(step(g, sq, 1.0, np.inf), g / (5.0 + 1e-6), rtol=1e-15)
        np.testing.assert_array_equal(step(g, sq, 10.0, np.inf), g)      # inactive: exact
        np.testing.assert_array_equal(step(g, sq, np.inf, 1.0), [1.0, -1.0, 0.5])
        np.testing.assert_allclose(step(g, sq, 2.5, 0.3), [0.3, -0.3, 0.5 * 2.5 / (5 + 1e-6)],
                                   rtol=1e-15)                          # norm first, then value
        assert np.isnan(step(g, np.array([np.nan]), 1.0, np.inf)).all()
        np.testing.assert_array_equal(step(np.array([np.nan, 9.0, -9.0]), sq, np.inf, 1.0),
                                      [np.nan, 1.0, -1.0])
        # L2 and weight decay come after clipping: p = 1 on the weight prefix [0, 2)
        p = np.ones(3)
        k.sgd_update(p, NO_SHADOW, g, 1.0, 0.1, sq, np.inf, 1.0, 0.2, 2)
        np.testing.assert_allclose(p, 1 - (np.array([1.0, -1.0, 0.5]) + 0.1 + [0.2, 0.2, 0.0]),
                                   rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(KERNEL_NAMES), n=st.integers(1, 300), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(DTYPES), frac=st.floats(0, 1),
       clip=st.sampled_from([NO_CLIP] + CLIPS))
def test_cpu_kernels_fuzz(name, n, seed, dtype, frac, clip):
    _compare_kernel(name, n, dtype, int(frac * n), seed=seed, clip=clip)


def test_cpu_kernels_keep_float32_in_the_loop():
    """Scalars are cast before the loop: the loops (plain and clipping) are compiled for
    float32 scalars only."""
    import numba
    p, m, v, g = (np.ones(16, np.float32) for _ in range(4))
    for shadow in (np.empty(0, np.uint16), np.zeros(16, np.uint16)):
        # a fresh (uncached) caller makes Numba type the loops' calls and record signatures
        block = numba.njit(error_model="numpy")(cpu_optim._adam_block.py_func)
        block(p, shadow, m, v, g, 0, 16, 8, 0.1, 0.9, 0.999, 1e-8, 1, 0.0, 0.0, 0.0, False,
              1.0, np.inf)
        block(p, shadow, m, v, g, 0, 16, 8, 0.1, 0.9, 0.999, 1e-8, 1, 0.0, 0.0, 0.0, True,
              0.5, 2.0)
    for loop in (cpu_optim._adam_loop, cpu_optim._adam_clip_loop):
        sigs = [s for s in loop.signatures if s[0].dtype.name == "float32"]
        # (params, shadow, m, v, grads) then the scalars
        assert sigs and all(str(t) == "float32" for t in sigs[0][5:]), (loop, sigs)


# ------------------------------------------------------------------- fused dispatch ----
FUSED = {
    "sgd": lambda: SGD(lr=0.1, weight_decay=0.01),
    "momentum": lambda: Momentum(lr=0.05, beta=0.9),
    "nesterov": lambda: Momentum(lr=0.05, beta=0.9, nesterov=True, form="pytorch",
                                 weight_decay=0.02),
    "rmsprop": lambda: RMSprop(lr=0.01, beta=0.95, eps=1e-7, weight_decay=0.01),
    "adam": lambda: Adam(lr=0.01, weight_decay=0.01),
    "adamw": lambda: AdamW(lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("backend,dispatch", [("cpu", cpu_optim._fused_update),
                                              ("numpy", ref_epoch._optimizer_update)])
@pytest.mark.parametrize("which", list(FUSED))
def test_fused_dispatch_equals_step(which, backend, dispatch, dtype):
    """The fused-epoch dispatchers with an optimizer's fused_spec() do what step() does."""
    n, n_l2, l2 = len(PROBLEM[0]), N_W, 0.04
    bk = get_backend(backend)
    stepped, fused = FUSED[which](), FUSED[which]()
    stepped.backend = backend
    fused.prepare(n, dtype, bk)
    kind, hyper, state = fused.fused_spec()
    assert kind == OPTIMIZERS[fused.kind] and hyper.dtype == np.float64
    assert state.shape == (fused.n_state_rows, n) and state.dtype == dtype
    p1 = np.random.default_rng(1).standard_normal(n).astype(dtype)
    p2 = p1.copy()
    for t in range(5):
        g = grad_at(p1, t)
        stepped.step(p1, g, l2=l2, n_l2=n_l2)
        dispatch(p2, g, state, kind, hyper, fused.iterations + 1, l2, n_l2)
        fused.advance(1)
        np.testing.assert_array_equal(p1, p2)
    for name in stepped.state:
        np.testing.assert_array_equal(stepped.state[name], fused.state[name])
    assert stepped.iterations == fused.iterations == 5


def test_fused_spec_is_live():
    opt = Adam(lr=0.01)
    opt.prepare(4, np.float64, get_backend("cpu"))
    _, hyper, state = opt.fused_spec()
    opt.lr = 0.5
    opt.beta2 = 0.9
    assert hyper[0] == 0.5 and hyper[2] == 0.9
    d = opt.state_dict()
    d["state"] = np.ones((2, 4))
    opt.load_state_dict(d)
    assert opt.fused_spec()[2] is state and (state == 1).all()


def test_fused_spec_needs_state():
    with pytest.raises(RuntimeError, match="prepare"):
        Adam().fused_spec()


# ------------------------------------------------------------ state and standalone use ----
@pytest.mark.parametrize("make", list(FUSED.values()), ids=list(FUSED))
def test_state_dict_round_trip_through_npz(make, tmp_path):
    a = make()
    p = PROBLEM[0].astype(np.float32)
    for t in range(5):
        a.step(p, grad_at(p, t))
    path = tmp_path / "opt.npz"
    np.savez(path, **a.state_dict())
    saved = dict(np.load(path, allow_pickle=False))
    assert int(saved["iterations"]) == 5
    b = make()
    b.load_state_dict(saved)           # before b's first step: kept until the buffer is known
    q = p.copy()
    for t in range(5, 10):
        a.step(p, grad_at(p, t))
        b.step(q, grad_at(q, t))
    np.testing.assert_array_equal(p, q)
    for name in a.state:
        np.testing.assert_array_equal(a.state[name], b.state[name])
    assert repr(a) == repr(b)


def test_state_dict_restores_hyperparameters_and_counter():
    a = Momentum(lr=0.3, beta=0.5, nesterov=True, form="pytorch", weight_decay=0.1)
    b = Momentum()
    b.load_state_dict(a.state_dict())
    assert (b.lr, b.beta, b.nesterov, b.form, b.weight_decay, b.iterations) == \
        (0.3, 0.5, True, "pytorch", 0.1, 0)
    assert b.state == {}


def test_loading_a_fresh_state_resets_moments():
    opt = Adam()
    fresh = opt.state_dict()
    p = np.ones(3)
    opt.step(p, np.ones(3))
    opt.load_state_dict(fresh)
    assert opt.iterations == 0 and not opt.state["m"].any() and not opt.state["v"].any()


def test_lr_change_between_steps_is_used():
    a, b = SGD(lr=0.1), SGD(lr=0.1)
    p, q = np.zeros(2), np.zeros(2)
    g = np.ones(2)
    a.step(p, g)
    a.lr = 0.5
    a.step(p, g)
    b.step(q, g)
    b.step(q, g * 5)
    np.testing.assert_allclose(p, q)
    assert a.fused_spec()[1][0] == 0.5


@pytest.mark.parametrize("default,expect", [("cpu", "cpu"), ("numpy", "numpy"), ("cuda", "cpu")])
def test_standalone_backend_for_numpy_arrays(default, expect, monkeypatch):
    """An optimizer without a backend steps host arrays on the default backend, or on cpu when
    the default is cuda (host arrays are not device arrays)."""
    monkeypatch.setattr(config, "DEFAULT_BACKEND", default)
    opt = Adam()
    opt.step(np.zeros(3, np.float32), np.ones(3, np.float32))
    assert opt._bk.name == expect and opt.state["m"].dtype == np.float32


# ------------------------------------------------------------------------- schedules ----
def test_schedule_values():
    assert [Constant(0.1)(t) for t in (0, 5)] == [0.1, 0.1]
    s = InverseTimeDecay(0.2, decay_rate=1.0)
    assert [s(t) for t in (0, 1, 3)] == [0.2, 0.1, 0.05]
    s = InverseTimeDecay(1.0, decay_rate=0.5, interval=2)
    assert [s(t) for t in (0, 1, 2)] == [1.0, 1.0 / 1.25, 1.0 / 1.5]
    s = StaircaseDecay(0.3, decay_rate=1.0, interval=10)
    assert [s(t) for t in (0, 9, 10, 19, 20, 35)] == [0.3, 0.3, 0.15, 0.15, 0.3 / 3, 0.3 / 4]
    s = ExponentialDecay(0.5, rate=0.95)
    assert [s(t) for t in (0, 1, 2)] == [0.5, 0.5 * 0.95, 0.5 * 0.95 ** 2]
    s = SqrtDecay(0.1, k=2.0)
    assert [s(t) for t in (0, 1, 4, 9)] == [0.2, 0.2, 0.1, 0.2 / 3]
    s = PiecewiseConstant([10, 20], [0.1, 0.01, 0.001])
    assert [s(t) for t in (0, 9, 10, 19, 20, 1000)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert Lambda(lambda e: 0.1 * 0.5 ** e)(3) == 0.0125
    assert s.unit == "epoch" and SqrtDecay(0.1, unit="step").unit == "step"


def test_schedule_course_example():
    # course: alpha0 = 0.2, decay_rate = 1: epochs 1..4 give 0.1, 0.067, 0.05, 0.04
    s = InverseTimeDecay(0.2, decay_rate=1.0)
    np.testing.assert_allclose([s(e) for e in range(1, 5)], [0.1, 0.2 / 3, 0.05, 0.04])


def test_as_schedule():
    s = ExponentialDecay(0.1, 0.9)
    assert as_schedule(s) is s
    assert as_schedule(0.3)(7) == 0.3
    assert as_schedule(lambda e: 1.0 / (e + 1))(3) == 0.25
    assert "ExponentialDecay(lr0=0.1, rate=0.9)" == repr(s)


# ------------------------------------------------------------------------------ EWA ----
def test_ewa_by_hand():
    # v1 = 0.5, v2 = 0.25 + 1 = 1.25, v3 = 0.625 + 1.5 = 2.125; corrected by 1 - 0.5^t
    avg = EWA(beta=0.5)
    assert math.isnan(avg.value)
    got = [avg.update(x) for x in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(got, [1.0, 1.25 / 0.75, 2.125 / 0.875], rtol=1e-15)
    raw = EWA(beta=0.5, bias_correction=False)
    np.testing.assert_allclose([raw.update(x) for x in (1.0, 2.0, 3.0)], [0.5, 1.25, 2.125])
    np.testing.assert_allclose(ewa([1, 2, 3], 0.5), got, rtol=1e-15)
    np.testing.assert_allclose(ewa([1, 2, 3], 0.5, bias_correction=False), [0.5, 1.25, 2.125])


def test_ewa_vectorised_equals_running():
    x = np.random.default_rng(0).standard_normal((200, 3))
    avg = EWA(beta=0.9)
    running = np.array([avg.update(row) for row in x])
    np.testing.assert_array_equal(ewa(x, 0.9), running)
    # the course's temperature example: a constant series is its own corrected average
    np.testing.assert_allclose(ewa(np.full(50, 7.0), 0.98), 7.0, rtol=1e-12)
    assert ewa(x[:, 0], 0.0).tolist() == x[:, 0].tolist()
    avg.reset()
    assert avg.t == 0 and avg.update(2.0) == 2.0


# --------------------------------------------------------------------------- errors ----
BAD_CONSTRUCTORS = [
    (lambda: SGD(lr=0), ValueError, r"lr=0 is invalid; expected a finite number > 0"),
    (lambda: SGD(lr=-1e-3), ValueError, r"lr=-0.001"),
    (lambda: Adam(lr=float("nan")), ValueError, r"lr=nan"),
    (lambda: Adam(lr=float("inf")), ValueError, r"lr=inf"),
    (lambda: Adam(lr="0.1"), ValueError, r"lr='0.1'"),
    (lambda: Adam(lr=True), ValueError, r"lr=True"),
    (lambda: Momentum(beta=1.0), ValueError, r"beta=1.0 is invalid; expected a number in \[0, 1\)"),
    (lambda: Momentum(beta=-0.1), ValueError, r"beta=-0.1"),
    (lambda: Momentum(form="keras"), ValueError, r"form='keras' is invalid; expected one of"),
    (lambda: Momentum(nesterov=1), TypeError, r"nesterov=1 is invalid; expected True or False"),
    (lambda: Momentum(weight_decay=-1), ValueError, r"weight_decay=-1 .* >= 0"),
    (lambda: RMSprop(beta=1.5), ValueError, r"beta=1.5"),
    (lambda: RMSprop(eps=0), ValueError, r"eps=0 is invalid; expected a finite number > 0"),
    (lambda: Adam(beta1=1.0), ValueError, r"beta1=1.0"),
    (lambda: Adam(beta2=-0.5), ValueError, r"beta2=-0.5"),
    (lambda: Adam(eps=-1e-8), ValueError, r"eps=-1e-08"),
    (lambda: AdamW(weight_decay=float("nan")), ValueError, r"weight_decay=nan"),
    (lambda: Adam(decoupled_weight_decay="yes"), TypeError, r"decoupled_weight_decay='yes'"),
    (lambda: InverseTimeDecay(0, 1.0), ValueError, r"lr0=0"),
    (lambda: InverseTimeDecay(0.1, -1.0), ValueError, r"decay_rate=-1.0"),
    (lambda: InverseTimeDecay(0.1, 1.0, staircase="no"), TypeError, r"staircase='no'"),
    (lambda: StaircaseDecay(0.1, 1.0, interval=0), ValueError, r"interval=0"),
    (lambda: ExponentialDecay(0.1, rate=1.5), ValueError, r"rate=1.5 .* \(0, 1\]"),
    (lambda: ExponentialDecay(0.1, rate=0), ValueError, r"rate=0"),
    (lambda: SqrtDecay(0.1, k=0), ValueError, r"k=0"),
    (lambda: PiecewiseConstant([10], [0.1]), ValueError, r"1 boundaries and 1 values"),
    (lambda: PiecewiseConstant([10, 5], [0.1, 0.2, 0.3]), ValueError, r"strictly increasing"),
    (lambda: PiecewiseConstant([10], [0.1, -0.2]), ValueError, r"values\[1\]=-0.2"),
    (lambda: PiecewiseConstant(10, [0.1]), TypeError, r"sequences"),
    (lambda: Lambda(3), TypeError, r"fn=3 is not callable"),
    (lambda: Constant(0.1, unit="batch"), ValueError, r"unit='batch'"),
    (lambda: as_schedule("fast"), TypeError, r"lr_schedule='fast'"),
    (lambda: EWA(beta=1.0), ValueError, r"beta=1.0"),
    (lambda: EWA(beta=0.9, bias_correction=None), TypeError, r"bias_correction=None"),
    (lambda: ewa([1, 2], beta=-0.1), ValueError, r"beta=-0.1"),
    (lambda: ewa(3.0, beta=0.9), ValueError, r"at least one dimension"),
    (lambda: ewa(["a"], beta=0.9), ValueError, r"series could not be converted"),
]


@pytest.mark.parametrize("make,exc,match", BAD_CONSTRUCTORS)
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_schedule_calls():
    with pytest.raises(ValueError, match=r"t=-1 is invalid"):
        Constant(0.1)(-1)
    with pytest.raises(ValueError, match=r"t=nan"):
        SqrtDecay(0.1)(float("nan"))
    with pytest.raises(ValueError, match=r"returned 0.0 at t=2; expected a finite number > 0"):
        Lambda(lambda e: 0.1 - 0.05 * e)(2)


def test_bad_lr_assignment_keeps_the_old_value():
    opt = Adam(lr=0.01)
    with pytest.raises(ValueError, match=r"lr=0.0 is invalid"):
        opt.lr = 0.0
    with pytest.raises(ValueError, match=r"beta1=1 is invalid"):
        opt.beta1 = 1
    assert opt.lr == 0.01 and opt.beta1 == 0.9


f32, f64 = np.float32, np.float64
BAD_BUFFERS = [
    (lambda: (np.zeros(4, f32), np.zeros(5, f32)), ValueError, r"grads has shape \(5,\) but "
     r"params has \(4,\); expected the same size"),
    (lambda: (np.zeros(4, f32), np.zeros(4, f64)), ValueError, r"grads.dtype=float64 differs"),
    (lambda: (np.zeros(8, f32)[::2], np.zeros(4, f32)), ValueError, r"params is not "
     r"C-contiguous"),
    (lambda: (np.zeros(4, f32), np.zeros(8, f32)[::2]), ValueError, r"grads is not "
     r"C-contiguous"),
    (lambda: (np.zeros((2, 2), f32), np.zeros((2, 2), f32)), ValueError, r"flat 1-D buffer"),
    (lambda: (np.zeros(4, np.int64), np.zeros(4, np.int64)), ValueError, r"params.dtype=int64"),
    (lambda: ([0.0, 1.0], [0.0, 1.0]), TypeError, r"params must be a NumPy"),
    (lambda: (np.zeros(4), None), TypeError, r"grads must be a NumPy"),
]


@pytest.mark.parametrize("make_opt", [SGD, Momentum, RMSprop, Adam, AdamW])
@pytest.mark.parametrize("make,exc,match", BAD_BUFFERS)
def test_bad_buffers(make_opt, make, exc, match):
    opt = make_opt()
    params, grads = make()
    with pytest.raises(exc, match=match):
        opt.step(params, grads)
    assert opt.iterations == 0


def test_read_only_and_aliased_buffers():
    p = np.zeros(4)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="params is read-only"):
        Adam().step(p, np.zeros(4))
    q = np.zeros(4)
    with pytest.raises(ValueError, match="grads shares memory with params"):
        Adam().step(q, q)


def test_reuse_on_another_buffer():
    opt = Adam()
    opt.step(np.zeros(4, f32), np.zeros(4, f32))
    with pytest.raises(ValueError, match=r"params has size 5 and dtype float32, but this "
                                         r"optimizer holds state for 4 parameters"):
        opt.step(np.zeros(5, f32), np.zeros(5, f32))
    with pytest.raises(ValueError, match=r"dtype float64, but this optimizer holds state for "
                                         r"4 parameters of float32"):
        opt.step(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"the parameter buffer has size 6"):
        opt.prepare(6, f32, get_backend("cpu"))
    assert opt.iterations == 1


def test_bad_l2_arguments():
    opt = SGD()
    p, g = np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError, match=r"l2=-0.1 is invalid"):
        opt.step(p, g, l2=-0.1, n_l2=2)
    with pytest.raises(ValueError, match=r"n_l2=5 is invalid; expected an integer in \[0, 4\]"):
        opt.step(p, g, l2=0.1, n_l2=5)
    with pytest.raises(ValueError, match=r"n_l2=1.5"):
        opt.step(p, g, l2=0.1, n_l2=1.5)


def test_bad_state_dicts():
    adam = Adam()
    adam.step(np.zeros(3), np.ones(3))
    d = adam.state_dict()
    with pytest.raises(ValueError, match="state_dict is from a Adam optimizer; expected AdamW"):
        AdamW().load_state_dict(d)
    with pytest.raises(ValueError, match=r"lacks \['beta2'\]"):
        Adam().load_state_dict({k: v for k, v in d.items() if k != "beta2"})
    with pytest.raises(ValueError, match=r"state has shape \(1, 3\) .* expected \(2, n\)"):
        Adam().load_state_dict(dict(d, state=np.zeros((1, 3))))
    with pytest.raises(ValueError, match=r"iterations=-1 is invalid"):
        Adam().load_state_dict(dict(d, iterations=np.array(-1)))
    with pytest.raises(ValueError, match=r"the saved state has size 4"):
        adam.load_state_dict(dict(d, state=np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"beta1=1.0 is invalid"):
        Adam().load_state_dict(dict(d, beta1=np.array(1.0)))
    loaded = Adam()
    loaded.load_state_dict(d)
    with pytest.raises(ValueError, match=r"params has size 5 .* state for 3 parameters"):
        loaded.step(np.zeros(5), np.zeros(5))
