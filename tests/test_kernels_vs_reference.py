"""Every registered kernel: the cpu backend against the NumPy reference (the spec).

Generated from the registry (``fastdl.kernels.KERNELS``) and the per-kernel declarations in
``tests/kernel_cases/`` (read its docstring for the format and how to add a kernel): a
registered kernel without a declaration fails ``test_every_registered_kernel_has_a_case``, so a
kernel without a comparison cannot exist. For each kernel and dtype:

* ``sim`` and ``cpu`` cases run with the real ``config.PARALLEL_MIN_SIZE`` (serial passes);
* ``parallel`` cases run with ``config.PARALLEL_MIN_SIZE = PARALLEL_TEST_SIZE`` (2048) and every
  ``prange`` dispatcher of the cpu package wrapped by a spy: a kernel declared
  ``cpu_parallel=True`` must have run a parallel pass, one declared ``False`` must not have
  (a new parallel path without a declaration fails here too);
* outputs are compared with the declared tolerance, inputs must be left unchanged, and each
  declared alias (``A is Z``) is run in place.

The cuda backend runs the ``sim`` cases of the same declarations under the CUDA simulator
(``tests/cuda_sim/kernels_sim.py``). Hand-written kernel tests remain for what a comparison
with the reference cannot show: hostile values (NaN, inf, huge logits), hypothesis fuzzing,
reference math checked against formulas, accuracy beyond the reference's.
"""

import importlib
import pkgutil

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import fastdl.kernels.cpu as cpu_pkg
from fastdl import config
from fastdl.kernels import KERNELS, all_kernel_names

from kernel_cases import (PARALLEL_TEST_SIZE, compare, copy_args, draw_args, load_cases,
                          parameters, reference_kernel)

CASES = load_cases()
REGISTERED = {name: file for file, name in all_kernel_names()}


def _cpu_kernel(file, name):
    return getattr(importlib.import_module(f"fastdl.kernels.cpu.{file}"), name)


def test_every_registered_kernel_has_a_case():
    missing = sorted(set(REGISTERED) - set(CASES))
    assert not missing, (f"registered kernels without a KernelCase in tests/kernel_cases/: "
                         f"{missing} (see tests/kernel_cases/__init__.py for the format)")
    stray = sorted(set(CASES) - set(REGISTERED))
    assert not stray, f"KernelCases of kernels that are not registered: {stray}"
    for name, (file, case) in CASES.items():
        assert file == REGISTERED[name], f"{name}'s case lives in {file}.py, its kernel in " \
                                         f"{REGISTERED[name]}.py"
        for which in ("sim", "cpu", "parallel"):
            assert case.sizes(which), f"{name}: no {which!r} cases declared"
        want = parameters(file, name)
        for k in case.outputs + case.scratch + tuple(x for pair in case.aliases for x in pair):
            assert k in want, f"{name}: {k!r} is not a parameter of the reference {want}"


class ParallelSpy:
    """Wraps every ``prange`` dispatcher of the cpu package (module globals, also inside
    tuples of per-code variants) to count its calls. The cpu kernels pick serial or parallel
    variants in Python, so the wrappers are what they call."""

    def __init__(self, monkeypatch):
        self.calls = 0
        for info in pkgutil.iter_modules(cpu_pkg.__path__):
            mod = importlib.import_module(f"{cpu_pkg.__name__}.{info.name}")
            for attr, value in list(vars(mod).items()):
                if self._is_parallel(value):
                    monkeypatch.setattr(mod, attr, self._wrap(value))
                elif isinstance(value, tuple) and any(self._is_parallel(v) for v in value):
                    monkeypatch.setattr(mod, attr, tuple(self._wrap(v) if self._is_parallel(v)
                                                         else v for v in value))

    @staticmethod
    def _is_parallel(value):
        return isinstance(value, CPUDispatcher) and bool(value.targetoptions.get("parallel"))

    def _wrap(self, dispatcher):
        def spy(*args, **kwargs):
            self.calls += 1
            return dispatcher(*args, **kwargs)
        return spy


def _run_case(file, name, case, which, i, dtype):
    """Reference vs cpu on case i of list ``which``; True when a parallel pass ran."""
    args = draw_args(file, name, case, which, i, dtype)
    what = f"{which}[{i}]={case.sizes(which)[i]} {np.dtype(dtype).name}"
    ref_args, got_args = copy_args(args), copy_args(args)
    reference_kernel(file, name)(*ref_args.values())
    kernel = _cpu_kernel(file, name)
    kernel(*got_args.values())
    compare(name, case, args, ref_args, got_args, dtype, case.rtol, what)
    for out, inp in case.alias_pairs(args):
        a = copy_args(args)
        a[out] = a[inp]
        kernel(*a.values())
        compare(name, case, args, ref_args, a, dtype, case.rtol,    # inp's buffer holds out
                f"{what} in place ({out} is {inp})", inputs=False, skip=(inp,))


def _case_ids():
    return [(name, dtype) for name in sorted(REGISTERED) if name in CASES
            for dtype in CASES[name][1].dtypes]


@pytest.mark.parametrize("name,dtype", _case_ids(),
                         ids=[f"{n}-{np.dtype(d).name}" for n, d in _case_ids()])
def test_cpu_matches_reference(name, dtype):
    file, case = CASES[name]
    for which in ("sim", "cpu"):
        for i in range(len(case.sizes(which))):
            _run_case(file, name, case, which, i, dtype)


@pytest.mark.parametrize("name,dtype", _case_ids(),
                         ids=[f"{n}-{np.dtype(d).name}" for n, d in _case_ids()])
def test_cpu_matches_reference_above_parallel_threshold(name, dtype, monkeypatch):
    file, case = CASES[name]
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", PARALLEL_TEST_SIZE)
    spy = ParallelSpy(monkeypatch)
    reached = []
    for i, p in enumerate(case.parallel):
        before = spy.calls
        _run_case(file, name, case, "parallel", i, dtype)
        if spy.calls > before:
            reached.append(p)
    if case.cpu_parallel:
        assert reached, (f"{name} is declared cpu_parallel=True but none of its parallel cases "
                         f"{case.parallel} ran a prange pass (sizes too small for the kernel's "
                         f"own conditions?)")
    else:
        assert not reached, (f"{name} ran a prange pass on {reached}: declare "
                             "cpu_parallel=True in its KernelCase")


def test_spy_sees_the_parallel_path(monkeypatch):
    """The spy itself: an optimizer step above the patched threshold is counted, one below is
    not (so a passing parallel test means the parallel pass ran)."""
    from fastdl.kernels.cpu import sgd_update
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", PARALLEL_TEST_SIZE)
    spy = ParallelSpy(monkeypatch)
    for n, expect in ((PARALLEL_TEST_SIZE - 1, 0), (PARALLEL_TEST_SIZE, 1)):
        p = np.zeros(n, np.float32)
        sgd_update(p, np.zeros(0, np.uint16), np.ones(n, np.float32), 0.5, 0.0, np.zeros(1),
                   np.inf, np.inf, 0.0, 0)
        assert spy.calls == expect and (p == -0.5).all()
