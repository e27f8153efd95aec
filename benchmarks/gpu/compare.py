"""Pairs the JSON lines of bench_gpu (nabla) and bench_torch.py (PyTorch) and prints a Markdown
table with the ratio nabla / PyTorch of each case's metric (higher is better for GB/s and
TFLOP/s; for us/op lower is better, so the ratio shown is PyTorch time / nabla time)."""
import json
import sys


def load(path):
    with open(path) as f:
        return {r["case"]: r for r in (json.loads(line) for line in f if line.startswith("{"))}


def main(nabla_path, torch_path):
    a, b = load(nabla_path), load(torch_path)
    print("| case | metric | nabla | PyTorch | nabla vs PyTorch |")
    print("| --- | --- | ---: | ---: | ---: |")
    for case, r in a.items():
        t = b.get(case)
        if not t:
            continue
        speed = t["seconds"] / r["seconds"]  # > 1: nabla faster
        print(f"| {case} | {r['metric']} | {r['value']:.4g} | {t['value']:.4g} | {speed:.2f}x |")
    if "copy_64M_f32" in a:
        copy = a["copy_64M_f32"]["value"]
        print("\nnabla as a fraction of its device-to-device copy rate (" + f"{copy:.0f} GB/s):")
        for case in ("add_64M_f32", "mul_64M_f32", "gelu_64M_f32", "sum_rows_8192x8192_f32", "softmax_rows_8192x8192_f32"):
            if case in a:
                print(f"- {case}: {a[case]['value'] / copy:.0%}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
