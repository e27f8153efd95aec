#!/usr/bin/env python3
"""The include graph of include/nabla and kernels/ is a DAG that follows the layers of DESIGN.md.

Every `#include "..."`, `<nabla/...>` and `<kernels/...>` is resolved to a file of the tree; the
check fails, naming the files, when
  - the graph has a cycle (A includes B, which, directly or not, includes A);
  - a file includes one of a higher layer (a lower layer reaches up);
  - a kernels/*.cuh includes <nabla/nabla.hpp> or a CPU kernel (backend/cpu/);
  - NABLA_OPS_NESTED (the old plumbing that held a cycle) appears anywhere.

Layers, lowest first. Within a layer any order is allowed as long as there is no cycle.
  0 core/
  1 backend/ interface and shared host code: backend.hpp, op_codes, functors, layout,
    op_dispatch, kernel_table, backend/cuda/*.hpp (host side of the CUDA backend)
  2 backend/cpu/ primitive kernels (every CPU file that fills no kernel table)
  3 autograd/grad_mode.hpp, autograd/node.hpp: what ops record; autograd/trace.hpp: what ops
    report to a tracer (ONNX export); amp/autocast.hpp: the autocast state and policy tables ops
    consult
  4 ops/
  5 autograd/engine.hpp, autograd/gradcheck.hpp: they run ops
  6 nn/   7 optim/   7.5 amp/ (GradScaler: steps optimizers)   8 data/   9 io/
  9.2 text/ (tokenizers; read their files with io/json)
  9.3 distributed/ (collectives over MPI, DistributedDataParallel: wraps nn modules, uses autograd)
  9.4 quantization/ (int8 models: wrap nn modules, run the backend/cpu int8 kernels, report QDQ to
      the tracer)
  9.5 models/ (built from all of those)
 10 the fused kernels that fill an op's slots (backend/cpu files with NABLA_FILL_KERNELS and
    kernels/*.cuh): they implement an op, so they sit above it, and nothing includes them but
 11 the device translation units and umbrellas: nabla.hpp, data.hpp, backend/cpu/kernels.hpp,
    backend/cpu/cpu_backend.cpp, backend/cuda/backend.cu, distributed.hpp

usage: include_layers.py <source root>
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer(rel, text):
    """The layer of a file, by its path under the source root."""
    if rel.startswith("kernels/"):
        return 10
    p = rel[len("include/nabla/"):]
    if p in ("nabla.hpp", "data.hpp", "distributed.hpp", "backend/cpu/kernels.hpp", "backend/cpu/cpu_backend.cpp",
             "backend/cuda/backend.cu"):
        return 11
    if p.startswith("core/"):
        return 0
    if p.startswith("backend/cpu/"):
        return 10 if "NABLA_FILL_KERNELS(" in text else 2
    if p.startswith("backend/"):
        return 1
    if p in ("autograd/grad_mode.hpp", "autograd/node.hpp", "autograd/trace.hpp", "amp/autocast.hpp"):
        return 3
    if p.startswith("amp/"):
        return 7.5
    if p.startswith("ops/"):
        return 4
    if p.startswith("autograd/"):
        return 5
    for i, d in enumerate(("nn/", "optim/", "data/", "io/")):
        if p.startswith(d):
            return 6 + i
    if p.startswith("text/"):
        return 9.2
    if p.startswith("distributed/"):
        return 9.3
    if p.startswith("quantization/"):
        return 9.4
    if p.startswith("models/"):
        return 9.5
    raise SystemExit(f"include_layers.py: {rel} is in no layer; add its directory to the list")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = {}
    for top in ("include/nabla", "kernels"):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith((".hpp", ".cuh", ".cpp", ".cu", ".h")):
                    full = os.path.join(d, n)
                    files[os.path.relpath(full, root)] = open(full, encoding="utf-8").read()

    problems = []
    edges = {}
    for rel, text in files.items():
        if "NABLA_OPS_NESTED" in text:
            problems.append(f"{rel}: uses NABLA_OPS_NESTED")
        targets = []
        for kind, name in INCLUDE.findall(text):
            if kind == '"':
                cand = os.path.normpath(os.path.join(os.path.dirname(rel), name))
            elif name.startswith("nabla/"):
                cand = os.path.join("include", name)
            elif name.startswith("kernels/"):
                cand = name
            else:
                continue  # system and third-party headers
            if cand not in files:
                problems.append(f"{rel}: includes {name}, which is not in the tree")
                continue
            targets.append(cand)
        edges[rel] = targets

    for rel, targets in edges.items():
        lr = layer(rel, files[rel])
        for t in targets:
            lt = layer(t, files[t])
            if lt > lr:
                problems.append(f"{rel} (layer {lr}) includes {t} (layer {lt}): a lower layer reaches up")
            if rel.startswith("kernels/") and (t == "include/nabla/nabla.hpp" or t.startswith("include/nabla/backend/cpu/")):
                problems.append(f"{rel}: a CUDA kernel file includes {t} (only CUDA-side, shared and op headers)")

    # Cycles: depth-first search, reporting each cycle once by its path.
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in edges[n]:
            if state.get(t) == 1:
                cyc = stack[stack.index(t):] + [t]
                problems.append("include cycle: " + " -> ".join(cyc))
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    sys.setrecursionlimit(10000)
    for n in sorted(edges):
        if n not in state:
            visit(n)

    n_edges = sum(len(t) for t in edges.values())
    if problems:
        print("\n".join(problems))
        print(f"include_layers: {len(problems)} problem(s) in {len(files)} files, {n_edges} includes")
        return 1
    print(f"include_layers: {len(files)} files, {n_edges} includes: acyclic, every include at its layer or below")
    return 0


if __name__ == "__main__":
    sys.exit(main())
