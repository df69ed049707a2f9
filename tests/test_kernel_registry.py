"""Every backend exports every registered kernel with the reference's parameter names, and every
public function of a reference kernel file is registered (the registry is enforced both ways).

The cuda backend is checked by parsing its source files (``ast``), so this test needs neither a
GPU nor numba-cuda. That each kernel also computes what the reference computes is
``tests/test_kernels_vs_reference.py`` (cpu) and ``tests/cuda_sim/kernels_sim.py`` (cuda).
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import fastdl.kernels as K

KERNEL_DIR = Path(K.__file__).parent
IMPORTABLE = ("reference", "cpu")
PAIRS = K.all_kernel_names()


def _public_defs(path):
    """{name: [positional parameter names]} of the public top-level functions in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name: [a.arg for a in node.args.posonlyargs + node.args.args]
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}


def _params(fn):
    return list(inspect.signature(fn).parameters)


def test_registry_is_well_formed():
    assert PAIRS, "empty registry"
    assert len(PAIRS) == len(set(PAIRS))
    names = [n for _, n in PAIRS]
    assert len(names) == len(set(names)), "a kernel name is registered under two files"
    for f, n in PAIRS:
        assert n.isidentifier() and not n.startswith("_"), n
        assert (KERNEL_DIR / "reference" / f"{f}.py").is_file(), f"reference/{f}.py missing"


@pytest.mark.parametrize("backend", IMPORTABLE)
@pytest.mark.parametrize("file,name", PAIRS)
def test_backend_exports_kernel(backend, file, name):
    ref = getattr(importlib.import_module(f"fastdl.kernels.reference.{file}"), name)
    mod = importlib.import_module(f"fastdl.kernels.{backend}.{file}")
    assert hasattr(mod, name), f"fastdl.kernels.{backend}.{file} does not define {name}"
    fn = getattr(mod, name)
    assert callable(fn)
    assert _params(fn) == _params(ref), f"{backend}.{file}.{name}: parameters differ"
    assert all(p.default is inspect.Parameter.empty
               for p in inspect.signature(fn).parameters.values()), "kernels take no defaults"
    # the package namespace (what backend.py hands out) exports it too, as the same object
    pkg = importlib.import_module(f"fastdl.kernels.{backend}")
    assert getattr(pkg, name, None) is fn, f"fastdl.kernels.{backend} does not export {name}"


@pytest.mark.parametrize("file,name", PAIRS)
def test_cuda_source_defines_kernel(file, name):
    path = KERNEL_DIR / "cuda" / f"{file}.py"
    assert path.is_file(), f"cuda/{file}.py is missing (every registered file exists in every " \
                           "backend)"
    defs = _public_defs(path)
    assert name in defs, f"cuda/{file}.py does not define {name}"
    ref = _public_defs(KERNEL_DIR / "reference" / f"{file}.py")[name]
    assert defs[name] == ref, f"cuda.{file}.{name}: parameters {defs[name]} != reference {ref}"


@pytest.mark.parametrize("backend", IMPORTABLE)
def test_every_public_function_is_registered(backend):
    """A public function in a backend's kernel file is a kernel, so it must be registered;
    a kernel file that is not in the registry at all is caught too."""
    unregistered = []
    for path in sorted((KERNEL_DIR / backend).glob("*.py")):
        if path.name.startswith("_"):
            continue
        registered = set(K.KERNELS.get(path.stem, ()))
        if path.stem not in K.KERNELS and backend == "reference":
            unregistered.append(f"{path.name} (file not in KERNELS)")
        for name in _public_defs(path):
            if name not in registered:
                unregistered.append(f"{backend}/{path.name}:{name}")
    if backend != "reference":
        # other backends may have helpers-only files, but never a public unregistered kernel
        # in a registered file
        unregistered = [u for u in unregistered if u.split("/")[1].split(".")[0] in K.KERNELS]
    assert not unregistered, f"public but not in fastdl.kernels.KERNELS: {unregistered}"


def test_codes_are_dense_and_distinct():
    for table in (K.ACTIVATIONS, K.LOSSES, K.OPTIMIZERS):
        assert sorted(table.values()) == list(range(len(table)))
