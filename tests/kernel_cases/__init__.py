"""How every registered kernel is drawn and compared with the reference (the spec).

Every kernel named in ``fastdl.kernels.KERNELS`` has a :class:`KernelCase` in
``tests/kernel_cases/<file>.py`` (the registry's file name), in that module's ``CASES`` dict::

    CASES = {
        "sum_squares": KernelCase(
            draw=lambda d, n: dict(out=d.out((1,), np.float64), x=d.hostile((n,))),
            sim=[(0,), (3,), (11,), (37,)],          # tiny: cuda simulator and cpu
            cpu=[(1,), (17,), (1001,), (4099,)],     # hostile serial sizes, cpu only
            parallel=[(5003,)],                      # > PARALLEL_TEST_SIZE elements, cpu only
            outputs=("out",),
            rtol={np.float32: 1e-12, np.float64: 1e-12},
            cpu_parallel=False),
    }

Two generic tests run these declarations, so registering a kernel without one fails
(``test_every_registered_kernel_has_a_case``):

* ``tests/test_kernels_vs_reference.py``: the cpu kernel against the reference on every case
  of ``sim + cpu`` (the real ``config.PARALLEL_MIN_SIZE``) and of ``parallel`` (with
  ``config.PARALLEL_MIN_SIZE`` patched down to :data:`PARALLEL_TEST_SIZE`, and every ``prange``
  variant of the cpu package spied on: a kernel declared ``cpu_parallel=True`` must reach one,
  a kernel declared ``cpu_parallel=False`` must reach none);
* ``tests/cuda_sim/kernels_sim.py``: the cuda kernel against the reference on the ``sim`` cases
  under the CUDA simulator (block sizes patched down so tiny shapes span several blocks).

What one comparison does, for each dtype in ``dtypes`` and each tuple ``p`` of a size list:

1. ``args = draw(d, *p)``: a dict holding every parameter of the reference kernel by name.
   ``d`` is a :class:`Draw` (``d.rng``, ``d.dtype``, ``d.hostile``, ``d.normal``, ``d.out``,
   ``d.skip``); its generator is seeded from (kernel, size list, case index, dtype).
2. The reference and the fast kernel each run on their own copy of ``args``.
3. Every argument in ``outputs`` is compared: ``|got - ref| <= rtol * (|ref| + scale)`` with
   ``scale`` the largest finite ``|ref|`` of that output (or ``scale[name](args)``), ``rtol``
   per dtype (``loosen[name]`` multiplies it; ``cuda_rtol`` replaces ``rtol`` for cuda);
   ``rtol = 0`` means bit for bit. NaN must sit where the reference has NaN. Outputs from
   ``d.out`` start as NaN, so an element a kernel forgets to write fails. bfloat16 outputs
   (``uint16`` bit patterns, ``fastdl.kernels.BF16``; the mixed-precision copies ``A16``,
   ``dZ16``, ``shadow``, a gathered batch) are compared as the float32 values they hold:
   bit for bit when ``rtol = 0``, else to within one bfloat16 ulp (2^-8 relative), since a
   float32 result an ulp away from the reference's may round to the neighbouring bfloat16.
4. Every other array argument except ``scratch`` (workspaces) must be left unchanged.
5. For each ``(output, input)`` in ``aliases`` the fast kernel runs again with the output
   buffer *being* the input array (``A is Z``: in-place use the contract allows), and its
   outputs are compared with the reference's as in 3. Pairs whose buffers differ in shape or
   dtype (a skipped optional output) are left out, and so are cases where ``alias_if(args)``
   is false (a kernel that allows in-place use in some modes only: ``augment_images``).

``host_args`` names arguments the cuda launcher takes as host arrays (everything else is copied
to the device). Tolerances are relative to the reference computed in the same dtype; give the
reason for anything looser than the defaults in a comment beside it.

To add a kernel: register it in ``fastdl/kernels/__init__.py``, write the three versions, and add
its ``KernelCase`` to ``tests/kernel_cases/<file>.py`` (a new registry file needs a new case
module with a ``CASES`` dict). Cases should cover batch 1, sizes that are multiples of nothing,
every code an integer argument selects, every optional (size-0) buffer, and, in ``parallel``,
sizes above ``PARALLEL_TEST_SIZE`` that cross every internal block of the cpu kernel.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fastdl.kernels import BF16, KERNELS
from fastdl.kernels import reference as _R

#: ``config.PARALLEL_MIN_SIZE`` during the ``parallel`` cases: small enough that the cases stay
#: cheap, large enough that the serial cases (real threshold, 2**20) differ from them.
PARALLEL_TEST_SIZE = 2048

#: The default relative tolerances (float32: a few ulp of accumulated rounding; float64 too).
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
#: Default for the cuda kernels (float32 transcendental functions of the GPU libraries differ
#: from NumPy's by ~2 ulp more).
CUDA_RTOL = {np.float32: 2e-5, np.float64: 1e-12}
#: One bfloat16 ulp, relative: the tolerance of bfloat16 outputs rounded from float32 results
#: that may differ by float32 ulps (see the module docstring).
BF16_RTOL = 2.0 ** -8
#: Bit for bit (copies, masks).
EXACT = {np.float32: 0.0, np.float64: 0.0, np.int64: 0.0}

SIZE_LISTS = ("sim", "cpu", "parallel")


class Draw:
    """Argument factory handed to ``KernelCase.draw``: a seeded generator and the dtype."""

    def __init__(self, rng, dtype):
        self.rng = rng
        self.dtype = np.dtype(dtype)

    def normal(self, shape, scale=1.0, dtype=None):
        return (scale * self.rng.standard_normal(shape)).astype(dtype or self.dtype)

    def hostile(self, shape, scale=3.0, dtype=None):
        """Normal values with exact zeros, large (x30) and tiny (x1e-6) magnitudes mixed in."""
        z = scale * self.rng.standard_normal(shape)
        flat = z.reshape(-1)
        k = flat.size
        if k:
            flat[self.rng.integers(0, k, size=max(1, k // 7))] = 0.0
            flat[self.rng.integers(0, k, size=max(1, k // 11))] *= 30.0
            flat[self.rng.integers(0, k, size=max(1, k // 13))] *= 1e-6
        return z.astype(dtype or self.dtype)

    def out(self, shape, dtype=None):
        """An output buffer poisoned with NaN (-7 for signed integer dtypes; for bfloat16
        0x7FC1, a NaN pattern the rounding never writes: it writes sign | 0x7FC0)."""
        dt = np.dtype(dtype or self.dtype)
        if dt == np.dtype(BF16):
            return np.full(shape, 0x7FC1, dt)
        return np.full(shape, np.nan if dt.kind == "f" else -7, dt)

    def skip(self, dtype=None):
        """A size-0 buffer: "no bias" / "skip this optional output" in the kernel contract."""
        return np.zeros(0, dtype or self.dtype)

    @property
    def low(self):
        """Whether bfloat16 (mixed-precision) variants apply: float32 data only."""
        return self.dtype == np.float32

    def no16(self, ndim=2):
        """An empty bfloat16 buffer of ``ndim`` dimensions: "no bfloat16 copy"."""
        return np.zeros((0,) * ndim, BF16)

    def bf16(self, x):
        """The bfloat16 bit patterns of ``x`` rounded from float32 (the reference's rule)."""
        out = np.empty(np.shape(x), BF16)
        _R.to_bfloat16(out, np.asarray(x, np.float32))
        return out


@dataclass(frozen=True)
class KernelCase:
    """How one registered kernel is drawn and compared (see the module docstring)."""

    draw: Callable
    sim: list
    cpu: list
    parallel: list
    outputs: tuple
    rtol: dict = field(default_factory=lambda: dict(RTOL))
    cpu_parallel: bool = False
    dtypes: tuple = (np.float32, np.float64)
    scratch: tuple = ()
    aliases: tuple = ()
    loosen: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    cuda_rtol: dict | None = None
    host_args: tuple = ()
    alias_if: Callable | None = None

    def alias_pairs(self, args):
        """The ``aliases`` that apply to the drawn ``args`` (module docstring, step 5)."""
        if self.alias_if is not None and not self.alias_if(args):
            return ()
        return tuple((out, inp) for out, inp in self.aliases
                     if args[out].shape == args[inp].shape and args[out].dtype == args[inp].dtype)

    def sizes(self, which):
        return getattr(self, which)

    def cuda_tolerance(self):
        """``cuda_rtol`` when declared; else ``rtol`` widened to :data:`CUDA_RTOL` (bit-exact
        declarations stay exact)."""
        if self.cuda_rtol is not None:
            return self.cuda_rtol
        return {t: (r if r == 0 else max(r, CUDA_RTOL.get(t, r))) for t, r in self.rtol.items()}


def load_cases():
    """{kernel name: (registry file, KernelCase)} from every module of this package."""
    cases = {}
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for name, case in getattr(mod, "CASES", {}).items():
            if name in cases:
                raise AssertionError(f"kernel {name!r} has cases in two modules")
            cases[name] = (info.name, case)
    return cases


def reference_kernel(file, name):
    return getattr(importlib.import_module(f"fastdl.kernels.reference.{file}"), name)


def parameters(file, name):
    return list(inspect.signature(reference_kernel(file, name)).parameters)


def seed_for(name, which, index, dtype):
    return [zlib.crc32(name.encode()), SIZE_LISTS.index(which), index,
            zlib.crc32(np.dtype(dtype).name.encode())]


def draw_args(file, name, case, which, index, dtype):
    """The case's argument dict for size tuple ``index`` of list ``which`` (checked against the
    reference's parameter names)."""
    p = case.sizes(which)[index]
    d = Draw(np.random.default_rng(seed_for(name, which, index, dtype)), dtype)
    args = case.draw(d, *p)
    want = parameters(file, name)
    if sorted(args) != sorted(want):
        raise AssertionError(f"{name}: draw{p} returned arguments {sorted(args)}; the reference "
                             f"takes {want}")
    return {k: args[k] for k in want}


def copy_args(args):
    return {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
            for k, v in args.items()}


def assert_output_close(got, ref, rtol, scale=None, what=""):
    """Compare one output with the reference (see the module docstring, step 3)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, \
        f"{what}: got {got.dtype}{got.shape}, the reference wrote {ref.dtype}{ref.shape}"
    if got.dtype == np.dtype(BF16):             # bfloat16 bit patterns
        if rtol == 0:
            np.testing.assert_array_equal(got, ref, err_msg=what)
            return
        got, ref, rtol = widen_bf16(got), widen_bf16(ref), max(rtol, BF16_RTOL)
    if rtol == 0:
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN positions")
    if scale is None:
        finite = np.abs(ref[np.isfinite(ref)]).astype(np.float64)
        scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def widen_bf16(bits):
    """float32 values of bfloat16 bit patterns (the reference's widening)."""
    out = np.empty(np.shape(bits), np.float32)
    _R.from_bfloat16(out, np.asarray(bits))
    return out


def compare(name, case, args, ref_args, got_args, dtype, rtol_table, what, inputs=True,
            skip=()):
    """Outputs against the reference and (``inputs``) other array arguments unchanged (steps 3
    and 4). ``args`` are the arguments as drawn (before any kernel ran); names in ``skip`` are
    not compared."""
    dt = np.dtype(dtype).type
    for k, v in args.items():
        if (not isinstance(v, np.ndarray) or k in case.scratch or k in skip
                or (k not in case.outputs and not inputs)):
            continue
        where = f"{name} {what}: argument {k!r}"
        if k in case.outputs:
            rtol = rtol_table[dt] * case.loosen.get(k, 1.0)
            scale = case.scale[k](args) if k in case.scale else None
            assert_output_close(got_args[k], ref_args[k], rtol, scale, where)
        else:
            np.testing.assert_array_equal(got_args[k], v, err_msg=f"{where} was modified; it "
                                          "is an input (declare it in outputs or scratch)")
