"""The layout of the engine and the application as read from their sources: the modules, what
each imports (at any depth of its code), pycaffe's public surface; tests/engine/test_layout.py checks
the rules of docs/architecture.md on it and tools/draw_architecture.py draws it."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAFFE = os.path.join(ROOT, "caffe-deeppose", "python", "caffe")
DEEPPOSE = os.path.join(ROOT, "deeppose")
# pycaffe's public modules (BVLC's python/caffe: __init__, pycaffe, io, classifier, detector, draw,
# net_spec, coord_map, proto/caffe_pb2); pycaffe.py is our caffe.net.pycaffe, reached as caffe.Net
PYCAFFE = {"caffe", "caffe.io", "caffe.classifier", "caffe.detector", "caffe.draw", "caffe.net_spec",
           "caffe.coord_map", "caffe.proto", "caffe.proto.caffe_pb2"}


def sources(top):
    """{dotted module name: path} of the .py files under `top` (a package's __init__ named as the package)."""
    base = os.path.dirname(top)
    out = {}
    for folder, _, files in os.walk(top):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, base)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name, path, modules):
    """The modules `name` imports (at any depth of its code), as names in `modules`: each
    imported module and the packages above it that `name` is not itself inside (their
    __init__ runs on the import)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    found = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != name and not (name + ".").startswith(prefix + "."):
                found.add(prefix)
    return found


def find_cycle(edges):
    """A list of modules [a, b, ..., a] that import each other in a ring, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def graph(top):
    """{module: the modules of the same package it imports} for the package folder `top`."""
    modules = sources(top)
    return {name: imports(name, path, modules) for name, path in modules.items()}
