"""The cuda backend without a GPU.

* ``test_simulator_suite`` runs ``tests/cuda_sim/kernels_sim.py`` (every cuda kernel against the
  NumPy reference, float32 and float64) in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``: the
  variable only takes effect before numba is first imported, and the cpu tests import numba in
  this process. The child's output is shown when it fails.
* ``test_float32_kernel_has_no_f64`` compiles every float32 kernel to PTX (needs the CUDA
  toolchain of ``numba-cuda[cu12|cu13]``, no GPU; skipped without it) and checks that no float64
  instruction leaked in: a Python float literal is float64 to numba, and the simulator does no
  type checking, so this is the only test that sees such a leak.
* ``test_import_without_numba_cuda`` / ``test_cuda_backend_error_without_gpu``: ``import fastdl``
  works without numba-cuda or a GPU, and ``backend="cuda"`` then raises an error naming what is
  missing.
"""

import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIM_SUITE = ROOT / "tests" / "cuda_sim" / "kernels_sim.py"


def _child_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                       [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def _tail(text, n=12000):
    return text if len(text) <= n else "...\n" + text[-n:]


def test_simulator_suite():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(SIM_SUITE), "-q", "-rs", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-o", "addopts="],
        cwd=ROOT, env=_child_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True, text=True,
        timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"simulator suite failed (rc={proc.returncode}):\n{_tail(out)}"
    assert re.search(r"\b[1-9]\d* passed\b", out), _tail(out)
    skips = [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]
    if skips:  # surface the child's skips here, where a plain pytest run shows them
        warnings.warn("simulator suite skipped: " + " | ".join(skips))


# --- PTX: no float64 in float32 kernels -------------------------------------------------------
def _ptx_cases():
    """(name, python function, float32 signature) of every kernel of the cuda backend."""
    from numba import types
    from fastdl.kernels.cuda import (_device, _gemm, activations, augment, batching, batchnorm,
                                     dense, dropout, epoch, losses, optim, reductions)

    f, i, b, u = types.float32, types.int64, types.boolean, types.uint64
    d = types.float64  # the clipping kernels' max_norm (their coefficient is formed in float64)
    A1, A2 = types.Array(f, 1, "A"), types.Array(f, 2, "A")
    D1 = types.Array(types.float64, 1, "A")  # batch norm's cached statistics are float64
    I1, I2 = types.Array(i, 1, "A"), types.Array(i, 2, "A")
    dt = np.float32
    loss_sig = (A1, i, f, A1, b, A2, A2, A2, I1, i)
    wloss_sig = (A1, i, f, A1, b, A2, A2, A2, A1)
    table = [
        ("activations._activation_forward_kernel",
         activations._activation_forward_kernel(dt), (A2, A2, i, f)),
        ("activations._activation_backward_kernel",
         activations._activation_backward_kernel(dt), (A2, A2, A2, i, f)),
        ("activations._softmax_forward_kernel", activations._softmax_forward_kernel(dt),
         (A2, A2)),
        ("dense._bias_act_kernel", dense._bias_act_kernel(dt), (A2, A1, i, f)),
        ("dense._dz_colsum_kernel", dense._dz_colsum_kernel(dt), (A1, A1, A2, A2, i, f)),
        ("dense._colsum_finish_kernel", dense._colsum_finish_kernel(dt), (A1, A1, i)),
        ("_gemm._gemm_kernel", _gemm._gemm_kernel(dt, 16), (A2, A2, A2, b, b)),
        ("losses._softmax_cross_entropy_kernel", losses._softmax_cross_entropy_kernel(dt),
         loss_sig),
        ("losses._sigmoid_binary_cross_entropy_kernel",
         losses._sigmoid_binary_cross_entropy_kernel(dt), loss_sig),
        ("losses._mean_squared_error_kernel", losses._mean_squared_error_kernel(dt), loss_sig),
        ("losses._weighted_softmax_cross_entropy_kernel",
         losses._weighted_softmax_cross_entropy_kernel(dt), wloss_sig),
        ("losses._weighted_sigmoid_binary_cross_entropy_kernel",
         losses._weighted_sigmoid_binary_cross_entropy_kernel(dt), wloss_sig),
        ("losses._weighted_mean_squared_error_kernel",
         losses._weighted_mean_squared_error_kernel(dt), wloss_sig),
        ("losses._exp_half_poisson_deviance_kernel",
         losses._exp_half_poisson_deviance_kernel(dt), loss_sig),
        ("losses._weighted_exp_half_poisson_deviance_kernel",
         losses._weighted_exp_half_poisson_deviance_kernel(dt), wloss_sig),
        ("reductions._sum_squares_kernel", reductions._sum_squares_kernel(dt),
         (A1, i, f, A1, b, A1, i)),
        ("_device._finish_kernel", _device._finish_kernel(dt), (A1, i, A1, i, f, A1, i, f)),
        ("_device._fill_kernel", _device._fill_kernel, (A1, f)),
        ("batching._gather_rows_kernel", batching._gather_rows_kernel, (A2, A2, I1, i, i)),
        ("optim._sgd_update_kernel", optim._sgd_update_kernel(dt), (A1, A1, f, f, f, i)),
        ("optim._momentum_update_kernel", optim._momentum_update_kernel(dt),
         (A1, A1, A1, f, f, f, b, f, f, i)),
        ("optim._rmsprop_update_kernel", optim._rmsprop_update_kernel(dt),
         (A1, A1, A1, f, f, f, f, f, f, i)),
        ("optim._adam_update_kernel", optim._adam_update_kernel(dt),
         (A1, A1, A1, A1) + (f,) * 11 + (i,)),
        ("optim._sgd_clip_update_kernel", optim._sgd_clip_update_kernel(dt),
         (A1, A1, f, f, D1, d, f, f, i)),
        ("optim._momentum_clip_update_kernel", optim._momentum_clip_update_kernel(dt),
         (A1, A1, A1, f, f, f, b, f, D1, d, f, f, i)),
        ("optim._rmsprop_clip_update_kernel", optim._rmsprop_clip_update_kernel(dt),
         (A1, A1, A1, f, f, f, f, f, D1, d, f, f, i)),
        ("optim._adam_clip_update_kernel", optim._adam_clip_update_kernel(dt),
         (A1, A1, A1, A1) + (f,) * 10 + (D1, d, f, f, i)),
        ("epoch._train_epoch_kernel", epoch._train_epoch_kernel(dt),
         (A1, A1, A1, A2, A1, A2, A2, I1, i, I2, i, f, i, A1, A2, i)),
        ("dropout._dropout_kernel", dropout._dropout_kernel(dt), (A2, A2, u, u, f)),
        ("augment._augment_kernel", augment._augment_kernel(dt),
         (A2, A2, i, i, i, u, u, b, i, d)),
        ("batchnorm._batchnorm_forward_train_kernel",
         batchnorm._batchnorm_forward_train_kernel(dt),
         (A2, D1, D1, A1, A1, A2, A1, A1, f, f, f, f, i, f)),
        ("batchnorm._batchnorm_forward_eval_kernel",
         batchnorm._batchnorm_forward_eval_kernel(dt), (A2, A2, A1, A1, A1, A1, f, i, f)),
        ("batchnorm._batchnorm_backward_kernel", batchnorm._batchnorm_backward_kernel(dt),
         (A2, A1, A1, A2, A2, A2, D1, D1, A1, i, f)),
    ]
    modules = (_device, _gemm, activations, augment, batching, batchnorm, dense, dropout, epoch,
               losses, optim, reductions)
    return table, modules


def test_augment_kernel_is_never_contracted_into_fma():
    """The noise must equal the host's bit for bit: NVVM contracts ``a * b + c`` into an FMA by
    default (one rounding instead of two), so the augmentation kernel may contain no ``fma``
    (``kernels/cuda/augment.py`` uses round-to-nearest intrinsics); its float64 arithmetic is
    really there (``mul.rn.f64``)."""
    cuda = _toolchain_or_skip()
    from numba import types
    from fastdl.kernels.cuda import augment
    for dt, T in ((np.float32, types.float32), (np.float64, types.float64)):
        A2 = types.Array(T, 2, "A")
        sig = (A2, A2, types.int64, types.int64, types.int64, types.uint64, types.uint64,
               types.boolean, types.int64, types.float64)
        ptx, _ = cuda.compile_ptx(augment._augment_kernel(dt).py_func, sig, cc=(9, 0))
        body = [ln.strip() for ln in ptx.splitlines() if not ln.lstrip().startswith("//")]
        assert not [ln for ln in body if re.match(r"(fma|mad)\.", ln)], dt
        assert [ln for ln in body if ln.startswith("mul.rn.f64")], dt


def _toolchain_or_skip():
    try:
        from numba import config as nb_config
        from numba import cuda
    except ImportError:
        pytest.skip("numba-cuda is not installed")
    if nb_config.ENABLE_CUDASIM:
        pytest.skip("PTX cannot be compiled under the simulator")

    def probe(x):
        x[0] = x[0]
    from numba import types
    try:
        cuda.compile_ptx(probe, (types.float32[:],), cc=(9, 0))
    except Exception as e:  # no NVVM / NVRTC: numba-cuda installed without [cu12]/[cu13]
        pytest.skip(f"no CUDA toolchain to compile PTX ({type(e).__name__}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})")
    return cuda


def test_every_kernel_is_in_the_ptx_table():
    """Every ``_..._kernel`` the cuda files define is compiled by the PTX check below."""
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    table, modules = _ptx_cases()
    listed = {name for name, _, _ in table}
    found = {f"{m.__name__.rsplit('.', 1)[1]}.{attr}" for m in modules
             for attr, obj in vars(m).items()
             if attr.startswith("_") and attr.endswith("_kernel")
             and getattr(getattr(obj, "py_func", obj), "__module__", None) == m.__name__}
    assert found <= listed, f"kernels missing from the PTX table: {sorted(found - listed)}"


#: Kernels whose spec has float64 buffers (batch norm's mean / inv_std): they may load, store
#: and convert float64, but do no float64 arithmetic.
F64_IO = {"batchnorm._batchnorm_forward_train_kernel", "batchnorm._batchnorm_backward_kernel"}
#: The update kernels with inline clipping form the norm coefficient min(1, max_norm /
#: (sqrt(sum_sq) + 1e-6)) once per thread in float64, from the float64 squared norm (it can
#: exceed float32's range), as the reference does: a few float64 instructions before the loop,
#: none per element. At most this many lines of float64 arithmetic are allowed there.
F64_COEF = {f"optim._{o}_clip_update_kernel" for o in ("sgd", "momentum", "rmsprop", "adam")}
F64_COEF_MAX_LINES = 16
#: Kernels that compute in float64 by design, whatever the data's dtype: the augmentation noise's
#: quantile function (bit-identical with the host, ``kernels/reference/augment.py``).
F64_BY_DESIGN = {"augment._augment_kernel"}
_F64_ANY = re.compile(r"\.f64\b")
_F64_ARITH = re.compile(r"^\s*(add|sub|mul|mad|fma|div|sqrt|rsqrt|rcp|neg|abs|min|max|setp|"
                        r"selp|ex2|lg2|sin|cos|testp|copysign)\.[\w.]*f64\b")


def test_float32_kernel_has_no_f64():
    cuda = _toolchain_or_skip()
    table, _ = _ptx_cases()
    leaks = {}
    for name, kernel, sig in table:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        body = [ln for ln in ptx.splitlines() if not ln.lstrip().startswith("//")]
        if name in F64_COEF:
            arith = [ln.strip() for ln in body if _F64_ARITH.search(ln)]
            if not arith or len(arith) > F64_COEF_MAX_LINES:  # none: the coefficient moved
                leaks[name] = [f"{len(arith)} float64 arithmetic lines; expected 1 to "
                               f"{F64_COEF_MAX_LINES} (the clipping coefficient)"] + arith[:5]
            continue
        if name in F64_BY_DESIGN:
            continue
        pattern = _F64_ARITH if name in F64_IO else _F64_ANY
        bad = [ln.strip() for ln in body if pattern.search(ln)]
        if bad:
            leaks[name] = bad[:5]
    assert not leaks, f"float64 instructions in float32 kernels: {leaks}"


# --- import and error without numba-cuda / without a GPU ---------------------------------------
_BLOCK_NUMBA_CUDA = textwrap.dedent("""
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "numba.cuda" or name.startswith(("numba.cuda.", "numba_cuda")):
                raise ImportError(f"No module named {name!r} (blocked by the test)")
    sys.meta_path.insert(0, _Block())
""")


def _run_child(code, **env):
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_child_env(**env),
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_import_without_numba_cuda():
    code = _BLOCK_NUMBA_CUDA + textwrap.dedent("""
        import fastdl
        import fastdl.kernels.cuda as kc
        assert "numba.cuda" not in sys.modules
        from fastdl.backend import get_backend
        try:
            get_backend("cuda")
        except RuntimeError as e:
            assert "numba-cuda" in str(e) and "not installed" in str(e), str(e)
            print("OK", e)
        else:
            raise AssertionError("get_backend('cuda') did not raise without numba-cuda")
    """)
    rc, out = _run_child(code)
    assert rc == 0 and "OK" in out, out


def test_import_fastdl_does_not_import_numba_cuda():
    rc, out = _run_child("import sys, fastdl; print('numba.cuda' in sys.modules)")
    assert rc == 0 and out.strip().endswith("False"), out


def test_cuda_backend_error_without_gpu():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    code = textwrap.dedent("""
        from numba import cuda
        if cuda.is_available():
            print("HAS_GPU")
            raise SystemExit(0)
        from fastdl.backend import get_backend
        try:
            get_backend("cuda")
        except RuntimeError as e:
            assert "no usable CUDA GPU" in str(e), str(e)
            print("OK", e)
        else:
            raise AssertionError("get_backend('cuda') did not raise without a GPU")
    """)
    rc, out = _run_child(code, NUMBA_ENABLE_CUDASIM="0")
    if "HAS_GPU" in out:
        pytest.skip("a CUDA GPU is available here")
    assert rc == 0 and "OK" in out, out
