"""The import graph of the fastdl package has no circles (issue 19, "Shape").

Every ``import`` statement of every module counts, those inside functions too (a lazy import
is still a dependency: it only hides a circle until the function runs). The training loop
takes a strategy object instead of importing ``fastdl.distributed``; the model file modules
(``io.py``, ``model_schema.py``) never import ``Sequential``, which ``fd.load`` (in
``nn/sequential.py``) builds.
"""

import ast
import os

import fastdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))

#: Circles that remain, each with its reason.
KNOWN = {
    # fd.callbacks (the module fastdl/train/callbacks.py) re-exports GradientMonitor, CSVLogger
    # and TensorBoard, which subclass Callback from it (one circle through the three modules)
    frozenset({"fastdl.train.callbacks", "fastdl.train.monitor", "fastdl.train.logs"}),
}


def modules():
    out = {}
    for d, _, files in os.walk(os.path.join(ROOT, "fastdl")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def import_graph():
    """{module: set of fastdl modules it imports}, from every import statement."""
    mods = modules()
    graph = {m: set() for m in mods}

    def nearest(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name
    for m, path in mods.items():
        package = m if path.endswith("__init__.py") else m.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] == "fastdl" and nearest(t):
                    graph[m].add(nearest(t))
    return graph


def circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(frozenset(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_the_sources():
    g = import_graph()
    assert "fastdl.train.loop" in g["fastdl.nn.sequential"]         # Sequential.fit, lazy
    assert "fastdl.io" in g["fastdl.nn.sequential"]                 # save and fd.load
    assert "fastdl.distributed.trainer" in g["fastdl.nn.sequential"]
    assert "fastdl.train.strategy" in g["fastdl.distributed.trainer"]
    assert "fastdl.model_schema" in g["fastdl.io"]


def test_the_loop_never_imports_the_distributed_package():
    g = import_graph()
    reach, todo = set(), ["fastdl.train.loop"]
    while todo:
        for w in g[todo.pop()] - reach:
            reach.add(w)
            todo.append(w)
    assert not {m for m in reach if m.startswith("fastdl.distributed")}
    assert "fastdl.nn.sequential" not in reach and "fastdl.train.loop" not in reach


def test_no_import_circles():
    found = set(circles(import_graph()))
    assert found <= KNOWN, [sorted(c) for c in found - KNOWN]
