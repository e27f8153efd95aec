"""Pairs the JSON lines of bench_gpu (nabla) and bench_torch.py (PyTorch) and prints a Markdown
table with the ratio nabla / PyTorch of each case's metric (higher is better for GB/s and
TFLOP/s; for us/op lower is better, so the ratio shown is PyTorch time / nabla time).

    compare.py NABLA.jsonl TORCH.jsonl                      one round
    compare.py --rounds N1.jsonl N2.jsonl -- T1.jsonl T2.jsonl   several rounds of each: the
        table shows the median value and, per side, the spread (max/min - 1) across rounds, so a
        ratio can be judged against the noise of the machine."""
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        return {r["case"]: r for r in (json.loads(line) for line in f if line.startswith("{"))}


def merged(paths):
    """case -> (metric, median seconds, median value, spread of seconds across rounds)"""
    rounds = [load(p) for p in paths]
    out = {}
    for case in rounds[0]:
        rs = [r[case] for r in rounds if case in r]
        secs = [r["seconds"] for r in rs]
        out[case] = (rs[0]["metric"], statistics.median(secs), statistics.median(r["value"] for r in rs),
                     max(secs) / min(secs) - 1 if len(secs) > 1 and min(secs) > 0 else None)
    return out


def main(nabla_paths, torch_paths):
    a, b = merged(nabla_paths), merged(torch_paths)
    several = len(nabla_paths) > 1 or len(torch_paths) > 1
    if several:
        print(f"Median of {len(nabla_paths)} rounds per side; spread = slowest / fastest round - 1.\n")
        print("| case | metric | nabla | spread | PyTorch | spread | nabla vs PyTorch |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    else:
        print("| case | metric | nabla | PyTorch | nabla vs PyTorch |")
        print("| --- | --- | ---: | ---: | ---: |")
    for case, (metric, secs, value, spread) in a.items():
        t = b.get(case)
        if not t:
            continue
        speed = t[1] / secs  # > 1: nabla faster
        if several:
            fmt = lambda s: "" if s is None else f"{s:.0%}"
            print(f"| {case} | {metric} | {value:.4g} | {fmt(spread)} | {t[2]:.4g} | {fmt(t[3])} | {speed:.2f}x |")
        else:
            print(f"| {case} | {metric} | {value:.4g} | {t[2]:.4g} | {speed:.2f}x |")
    if "copy_64M_f32" in a:
        copy = a["copy_64M_f32"][2]
        print("\nnabla as a fraction of its device-to-device copy rate (" + f"{copy:.0f} GB/s):")
        for case in ("add_64M_f32", "mul_64M_f32", "gelu_64M_f32", "sum_rows_8192x8192_f32", "softmax_rows_8192x8192_f32"):
            if case in a:
                print(f"- {case}: {a[case][2] / copy:.0%}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--rounds":
        sep = args.index("--")
        main(args[1:sep], args[sep + 1:])
    else:
        main([args[0]], [args[1]])
