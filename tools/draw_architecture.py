#!/usr/bin/env python3
"""docs/architecture.png: the modules of the engine (caffe/) and of the application (deeppose/) in
their folders, with the imports between them, drawn by Graphviz `dot` from tools/layout.py.

A box is a folder, an oval a module (green: pycaffe's public surface); an arrow points from the
importer to what it imports. Inside a folder each import is an arrow; between two folders one
arrow stands for all the imports from one to the other, thicker the more they are (its label).
The engine's top folder is drawn as three boxes: pycaffe's surface, the modules that import only
their neighbours there (the basics), and the others. The arrows into the basics and into caffe/proto,
which every folder imports, are left out (the picture says so).
Run from the repository root, with caffe-deeppose/python and the root on PYTHONPATH:
    python tools/draw_architecture.py [docs/architecture.png]
"""
import collections
import os
import subprocess
import sys

from tools.layout import CAFFE, DEEPPOSE, PYCAFFE, ROOT, imports, sources

FOUNDATION = ("caffe.basics", "caffe.proto")  # imported from everywhere: no arrows into them between boxes


def _groups(modules, edges):
    """{module: (group id, label)}: its folder, the engine's top folder in three."""
    out = {}
    for name, path in modules.items():
        folder = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        out[name] = (folder, folder.replace(".", "/") + "/")
    top = {name for name, (folder, _) in out.items() if folder == "caffe"}
    basics = set(top) - PYCAFFE
    while True:  # the top-level modules that import nothing outside the basics
        outside = {n for n in basics if edges[n] - basics}
        if not outside:
            break
        basics -= outside
    for name in top:
        if name in PYCAFFE:
            out[name] = ("caffe.pycaffe", "caffe/  pycaffe's surface")
        elif name in basics:
            out[name] = ("caffe.basics", "caffe/  basics")
    return out


def dot_source():
    """The graph in dot's language."""
    modules = {**sources(CAFFE), **sources(DEEPPOSE)}
    edges = {name: imports(name, path, modules) for name, path in modules.items()}
    groups = _groups(modules, edges)
    members = collections.defaultdict(list)
    for name in sorted(modules):
        members[groups[name]].append(name)
    inner, between = [], collections.Counter()
    for name in sorted(modules):
        for target in sorted(edges[name]):
            if groups[name] == groups[target]:
                inner.append((name, target))
            elif groups[target][0] not in FOUNDATION:
                between[groups[name][0], groups[target][0]] += 1
    out = ["digraph architecture {", "  compound=true; newrank=true; rankdir=TB; nodesep=0.15; ranksep=0.35;",
           '  node [fontname="Helvetica", fontsize=10, height=0.3, style=filled, fillcolor=white];',
           '  edge [color="#00000055", arrowsize=0.5];']
    for (group, label), names in sorted(members.items()):
        # invisible top and bottom of the box: the arrows between boxes leave from the bottom and
        # reach the top, so that dot draws an imported folder below its importers
        out += [f'  subgraph "cluster_{group}" {{',
                f'    label="{label}"; fontname="Helvetica-Bold"; fontsize=12; style=filled; '
                'fillcolor="#f2f2f2"; color="#999999";',
                f'    "top:{group}" [shape=point, style=invis, width=0]; '
                f'"bottom:{group}" [shape=point, style=invis, width=0];']
        for name in names:
            text = "__init__" if modules[name].endswith("__init__.py") else name.rpartition(".")[2]
            out.append(f'    "{name}" [label="{text}", fillcolor="{"#b7e1a1" if name in PYCAFFE else "white"}"];')
            out.append(f'    "top:{group}" -> "{name}" -> "bottom:{group}" [style=invis];')
        out.append("  }")
    out += [f'  "{name}" -> "{target}";' for name, target in inner]
    for (here, there), count in sorted(between.items()):
        out.append(f'  "bottom:{here}" -> "top:{there}" [ltail="cluster_{here}", lhead="cluster_{there}", '
                   f'penwidth={0.5 + count ** 0.5:.1f}, color="#3060a099", label="{count}", fontsize=9, '
                   'fontcolor="#3060a0"];')
    out += [f'  "bottom:{group}" -> "top:{base}" [style=invis];'  # the foundation at the bottom
            for group, _ in members if group not in FOUNDATION for base in FOUNDATION]
    out.append('  label="Arrows between boxes into caffe/ basics and caffe/proto (imported from every folder) are '
               'left out."; labelloc=b; fontname="Helvetica"; fontsize=11;')
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else os.path.join(ROOT, "docs", "architecture.png")
    subprocess.run(["dot", "-Tpng", "-Gdpi=72", "-o", out], input=dot_source(), text=True, check=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
