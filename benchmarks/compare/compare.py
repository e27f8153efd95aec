#!/usr/bin/env python3
"""Pairs Google Benchmark JSON from nabla_bench_ops and nabla_bench_libtorch by case name and
prints a Markdown table of medians. ratio = nabla time / LibTorch time (below 1: nabla faster).
Usage: compare.py nabla.json gemm.json [libtorch.json]"""
import json
import sys


def medians(path):
    """run_name -> median aggregate entry."""
    if not path:
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median":
            out[b["run_name"].replace("/real_time", "")] = b
    return out


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def ns(b):
    return b["real_time"] * UNIT_NS[b["time_unit"]]


def fmt_time(t):
    if t < 1e3:
        return f"{t:.0f} ns"
    if t < 1e6:
        return f"{t / 1e3:.2f} us"
    return f"{t / 1e6:.2f} ms"


def figure(b):
    """The figure that matters for this case: GFLOP/s, GB/s or time."""
    if b is None:
        return "-"
    if "GFLOPS" in b:
        return f"{b['GFLOPS']:.1f} GFLOP/s ({fmt_time(ns(b))})"
    if "bytes_per_second" in b:
        return f"{b['bytes_per_second'] / 1e9:.1f} GB/s ({fmt_time(ns(b))})"
    return fmt_time(ns(b))


def main():
    nabla = medians(sys.argv[1])
    gemm = medians(sys.argv[2])
    torch = medians(sys.argv[3] if len(sys.argv) > 3 else "")
    rows = []
    for name, b in nabla.items():
        t = torch.get(name)
        ratio = f"{ns(b) / ns(t):.2f}" if t else "-"
        rows.append((f"nabla::{name}" if name.startswith("matmul") else name, figure(b), figure(t), ratio))
        if name.startswith("matmul/"):
            n = name.split("/")[1]
            for label, key in (("gemm_native (nabla's own kernel)", f"BM_nabla_native<float>/{n}"),
                               ("OpenBLAS sgemm", f"BM_openblas<float>/{n}")):
                g = gemm.get(key)
                if g is not None:
                    r = f"{ns(g) / ns(t):.2f}" if t else "-"
                    rows.append((f"  {label} {n}", figure(g), figure(t), r))
    head = ("case", "nabla", "LibTorch", "ratio (time nabla/LibTorch)")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    main()
