"""The cuda backend without a GPU.

* ``test_simulator_suite`` runs ``tests/cuda_sim/kernels_sim.py`` (every cuda kernel against the
  NumPy reference, float32 and float64) in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``: the
  variable only takes effect before numba is first imported, and the cpu tests import numba in
  this process. The child's output is shown when it fails.
* ``test_float32_kernels_compute_in_float32`` types every float32 kernel with numba-cuda's CUDA
  compiler front end (typing and lowering to LLVM IR need neither a GPU nor the NVVM/NVRTC
  toolchain, so it runs in CI wherever the test extra's numba-cuda is installed) and checks
  Numba's typed IR for float64 arithmetic: a Python float literal is float64 to numba
  (``x * 0.5`` on a float32 ``x`` computes in double precision, 1/64 rate on consumer GPUs),
  and the simulator does no type checking, so this is the only test that sees such a leak.
  ``test_float64_check_finds_planted_leaks`` proves the check on planted leaks. The
  augmentation kernel computes in float64 by design (``F64_BY_DESIGN``).
* ``test_augment_kernel_is_never_contracted_into_fma`` compiles the augmentation kernel to PTX
  (needs NVVM: numba-cuda with its toolkit wheels) and checks that no multiply is fused with an
  add, which would break its bit equality with the host.
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


# --- no float64 arithmetic in float32 kernels ---------------------------------------------------
def _typing_cases():
    """(name, python function, float32 signature) of every kernel of the cuda backend."""
    from numba import types
    from fastdl.kernels.cuda import (_device, _gemm, activations, augment, batching, batchnorm,
                                     dense, dropout, epoch, losses, optim, reductions, sparse)

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
        ("losses._correct_predictions_kernel", losses._correct_predictions_kernel(dt),
         (D1, i, A1, b, A2, A2, A1, I1, i, i)),
        ("losses._exp_half_poisson_deviance_kernel",
         losses._exp_half_poisson_deviance_kernel(dt), loss_sig),
        ("losses._weighted_exp_half_poisson_deviance_kernel",
         losses._weighted_exp_half_poisson_deviance_kernel(dt), wloss_sig),
        ("reductions._sum_squares_kernel", reductions._sum_squares_kernel(dt),
         (A1, i, f, A1, b, A1, i)),
        ("_device._finish_kernel", _device._finish_kernel(dt), (A1, i, A1, i, f, A1, i, f)),
        ("_device._fill_kernel", _device._fill_kernel, (A1, f)),
        ("batching._gather_rows_kernel", batching._gather_rows_kernel, (A2, A2, I1, i, i)),
        ("batching._csr_offsets_kernel", batching._csr_offsets_kernel, (I1, I1, I1)),
        ("batching._csr_copy_kernel", batching._csr_copy_kernel, (A1, I1, I1, A1, I1, I1, I1)),
        ("sparse._densify_kernel", sparse._densify_kernel(dt), (A2, A1, I1, I1, i, i)),
        ("sparse._add_kernel", sparse._add_kernel(dt), (A1, A1)),
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
         (D1, D1, A1, A1, A2, A1, A2, A2, I1, i, I2, i, f, i, A1, A2, i)),
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
               losses, optim, reductions, sparse)
    return table, modules


def _cuda_compiler_or_skip():
    """numba-cuda's ``compile_cuda`` (typing and lowering to LLVM IR: no GPU, no NVVM)."""
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (it is in the test extra)")
    from numba import config as nb_config
    if nb_config.ENABLE_CUDASIM:
        pytest.skip("NUMBA_ENABLE_CUDASIM=1 replaces numba.cuda by the simulator, which has no "
                    "compiler")
    from numba.cuda.compiler import compile_cuda
    return compile_cuda


def _allowed_lines():
    """Source lines where float64 arithmetic is intended: the clipping kernels form the norm
    coefficient min(1, max_norm / (sqrt(sum_sq) + 1e-6)) once per thread in float64 from the
    float64 squared norm (it can exceed float32's range), as the reference does; nothing per
    element. {(file name, line)} of the body of ``optim._update_fns(T).clip_coef``."""
    import inspect
    from numba import float32
    from fastdl.kernels.cuda import optim
    clip_coef = optim._update_fns.for_type(float32)[-1]
    lines, first = inspect.getsourcelines(clip_coef.py_func)
    path = inspect.getsourcefile(clip_coef.py_func)
    return {(path, first + k) for k in range(len(lines))}


def float64_arithmetic(cres, seen=None):
    """Statements of a compiled kernel (and of the device functions it calls without inlining)
    that compute in float64: a binary/unary operation or a call (other than a cast to a
    number type, e.g. ``T(1.0)``) with a float64 operand or result, comparisons included.
    Loads and stores of float64 arrays and casts are not arithmetic. Returns
    [(file, line, statement)] from Numba's typed IR of the CUDA target."""
    from numba import types
    seen = set() if seen is None else seen
    ann = cres.type_annotation
    typemap = ann.typemap
    found = []
    for block in ann.blocks.values():
        for stmt in block.body:
            # numba-cuda has its own IR classes (numba.cuda.core.ir): match by name
            if type(stmt).__name__ != "Assign" or type(stmt.value).__name__ != "Expr":
                continue
            expr = stmt.value
            if expr.op in ("binop", "inplace_binop"):
                operands = [expr.lhs, expr.rhs]
            elif expr.op == "unary":
                operands = [expr.value]
            elif expr.op == "call":
                fnty = typemap.get(expr.func.name)
                if type(fnty).__name__ == "NumberClass":      # a cast
                    continue
                if isinstance(fnty, types.Dispatcher):         # a device function, not inlined
                    for sub in fnty.dispatcher.overloads.values():
                        if id(sub) not in seen:
                            seen.add(id(sub))
                            found += float64_arithmetic(sub, seen)
                operands = list(expr.args)
            else:
                continue
            if typemap.get(stmt.target.name) == types.float64 or any(
                    typemap.get(v.name) == types.float64 for v in operands):
                found.append((stmt.loc.filename, stmt.loc.line, str(stmt)))
    return found


def test_every_kernel_is_in_the_float64_table():
    """Every ``_..._kernel`` the cuda files define is typed by the float64 check below."""
    _cuda_compiler_or_skip()
    table, modules = _typing_cases()
    listed = {name for name, _, _ in table}
    found = {f"{m.__name__.rsplit('.', 1)[1]}.{attr}" for m in modules
             for attr, obj in vars(m).items()
             if attr.startswith("_") and attr.endswith("_kernel")
             and getattr(getattr(obj, "py_func", obj), "__module__", None) == m.__name__}
    assert found <= listed, f"kernels missing from the float64 table: {sorted(found - listed)}"


#: Kernels that compute in float64 by design, whatever the data's dtype: the augmentation
#: noise's quantile function (bit-identical with the host, ``kernels/reference/augment.py``).
F64_BY_DESIGN = {"augment._augment_kernel"}


def _type(compile_cuda, pyfunc, sig):
    """Compile ``pyfunc`` for the CUDA target as far as LLVM IR (no GPU, no NVVM needed)."""
    from numba import types
    from numba.cuda.cudadrv.error import CudaSupportError
    try:
        return compile_cuda(pyfunc, types.void, sig, cc=(9, 0))
    except CudaSupportError as e:
        # a device function without inline="always" is compiled on its own, for the current
        # device: that needs a driver (every fastdl device function is inlined, _device.py)
        raise AssertionError(
            f"{pyfunc.__qualname__} calls a device function that is not @cuda.jit(device=True, "
            f"inline='always'); compiling it needs a CUDA driver ({str(e).strip()[:80]}...). "
            "Inline it, as every device function of fastdl/kernels/cuda is, so that Numba "
            "types it inside the kernel where this check reads it.") from None


def test_float32_kernels_compute_in_float32():
    compile_cuda = _cuda_compiler_or_skip()
    allowed = _allowed_lines()
    leaks, used = {}, set()
    for name, kernel, sig in _typing_cases()[0]:
        found = float64_arithmetic(_type(compile_cuda, kernel.py_func, sig))
        if name in F64_BY_DESIGN:
            assert found, f"{name} is declared to compute in float64 but does not (update " \
                          "F64_BY_DESIGN)"
            continue
        for path, line, stmt in found:
            if (path, line) in allowed:
                used.add(name)
            else:
                leaks.setdefault(name, []).append(f"{os.path.basename(path)}:{line}: {stmt}")
    assert not leaks, "float64 arithmetic in float32 kernels (write literals as T(0.5), " \
                      f"cast ints with T(n)): {leaks}"
    clip = {f"optim._{o}_clip_update_kernel" for o in ("sgd", "momentum", "rmsprop", "adam")}
    assert used == clip, f"the allowed float64 coefficient is used by {sorted(used)}; " \
                         f"expected {sorted(clip)} (update _allowed_lines if it moved)"


def test_float64_check_finds_planted_leaks():
    """The check on planted leaks: a float64 literal in arithmetic, in a comparison, an integer
    division (float32 / int64 is float64 to numba), one inside an inlined device function; the
    same kernels written with T(...) casts pass. A device function that is not inlined is
    either checked too (with a driver) or reported, never silently skipped."""
    from numba import cuda, float32, types
    compile_cuda = _cuda_compiler_or_skip()
    T = float32

    @cuda.jit(device=True, inline="always")
    def half_leak(v):
        return v * 0.5

    @cuda.jit(device=True, inline="always")
    def half_clean(v):
        return v * T(0.5)

    @cuda.jit(device=True)
    def half_leak_not_inlined(v):
        return v * 0.5

    def literal(x, n):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = x[i] * 0.5

    def compare(x, n):
        i = cuda.grid(1)
        if i < x.shape[0] and x[i] > 0.5:
            x[i] = T(0)

    def int_division(x, n):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = x[i] / n

    def in_device_function(x, n):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = half_leak(x[i])

    def in_device_function_not_inlined(x, n):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = half_leak_not_inlined(x[i])

    def clean(x, n):
        i = cuda.grid(1)
        if i < x.shape[0] and x[i] > T(0.5):
            x[i] = half_clean(x[i]) / T(n) + T(1.0)

    sig = (types.Array(types.float32, 1, "A"), types.int64)
    for leaky in (literal, compare, int_division, in_device_function):
        assert float64_arithmetic(_type(compile_cuda, leaky, sig)), \
            f"the planted float64 leak in {leaky.__name__} was not found"
    assert float64_arithmetic(_type(compile_cuda, clean, sig)) == []
    try:
        found = float64_arithmetic(_type(compile_cuda, in_device_function_not_inlined, sig))
    except AssertionError as e:                 # no driver here: reported, not skipped
        assert "not @cuda.jit(device=True, inline='always')" in str(e), str(e)
    else:                                       # a driver: the device function is checked
        assert found, "the leak in a device function that is not inlined was not found"



def _ptx_compiler_or_skip():
    """numba.cuda with NVVM (``compile_ptx``): numba-cuda installed with its CUDA toolkit
    wheels ([cu12]/[cu13]); the typing check above needs neither."""
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    from numba import config as nb_config
    if nb_config.ENABLE_CUDASIM:
        pytest.skip("PTX cannot be compiled under the simulator")
    from numba import types

    def probe(x):
        x[0] = x[0]
    try:
        cuda.compile_ptx(probe, (types.float32[:],), cc=(9, 0))
    except Exception as e:  # no NVVM / NVRTC: numba-cuda installed without [cu12]/[cu13]
        pytest.skip(f"no CUDA toolchain to compile PTX ({type(e).__name__}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})")
    return cuda


def test_augment_kernel_is_never_contracted_into_fma():
    """The noise must equal the host's bit for bit: NVVM contracts ``a * b + c`` into an FMA by
    default (one rounding instead of two), so the augmentation kernel may contain no ``fma``
    (``kernels/cuda/augment.py`` uses round-to-nearest intrinsics); its float64 arithmetic is
    really there (``mul.rn.f64``)."""
    cuda = _ptx_compiler_or_skip()
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
