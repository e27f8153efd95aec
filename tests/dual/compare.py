"""Runs a dual-compiled program's two builds (nabla, LibTorch) and compares what they print:
the same labels in the same order, each with the same count of numbers, equal within
rel 1e-9 / abs 1e-12 (both compute in float64; summation order may differ).

    python3 tests/dual/compare.py NABLA_BINARY [TORCH_BINARY]

Without the LibTorch binary it runs the nabla one alone and exits 77 (skipped). With MNIST in
$NABLA_DATA it hands both programs the test split, uncompressed, as $DUAL_MNIST_DIR."""
import gzip
import math
import os
import shutil
import subprocess
import sys
import tempfile


def mnist_dir():
    """The MNIST test split, uncompressed (LibTorch's reader takes no .gz), from $NABLA_DATA/mnist
    into a temporary folder; None when NABLA_DATA has no MNIST (the programs then skip their
    data rows, both alike)."""
    src = os.path.join(os.environ.get("NABLA_DATA", ""), "mnist")
    names = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all(os.path.exists(os.path.join(src, n + ".gz")) or os.path.exists(os.path.join(src, n)) for n in names):
        return None
    dst = tempfile.mkdtemp(prefix="nabla_dual_mnist_")
    for n in names:
        plain = os.path.join(src, n)
        if os.path.exists(plain):
            shutil.copy(plain, os.path.join(dst, n))
        else:
            with gzip.open(plain + ".gz", "rb") as f, open(os.path.join(dst, n), "wb") as g:
                shutil.copyfileobj(f, g)
    return dst


def run(binary):
    out = subprocess.run([binary], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{binary} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        label, n, values = parts[0], int(parts[1]), [float(v) for v in parts[2:]]
        if len(values) != n:
            sys.exit(f"{binary}: {label} says {n} values, printed {len(values)}")
        rows.append((label, values))
    return rows


def main():
    data = mnist_dir()
    if data:
        os.environ["DUAL_MNIST_DIR"] = data
    try:
        compare()
    finally:
        if data:
            shutil.rmtree(data, ignore_errors=True)


def compare():
    ours = run(sys.argv[1])
    if len(sys.argv) < 3 or not sys.argv[2]:
        print(f"{len(ours)} rows from the nabla build; no LibTorch build to compare with (skipped)")
        sys.exit(77)
    theirs = run(sys.argv[2])
    bad = 0
    if [r[0] for r in ours] != [r[0] for r in theirs]:
        sys.exit(f"different labels:\n nabla {[r[0] for r in ours]}\n torch {[r[0] for r in theirs]}")
    for (label, a), (_, b) in zip(ours, theirs):
        if len(a) != len(b):
            print(f"{label}: nabla printed {len(a)} values, LibTorch {len(b)}")
            bad += 1
            continue
        worst = max((abs(x - y) / (1e-12 + 1e-9 * max(abs(x), abs(y))) for x, y in zip(a, b)), default=0.0)
        nan_mismatch = any(math.isnan(x) != math.isnan(y) for x, y in zip(a, b))
        if worst > 1.0 or nan_mismatch:
            print(f"{label}: differs (worst {worst:.3g}x the tolerance)\n nabla {a[:8]}\n torch {b[:8]}")
            bad += 1
    print(f"{len(ours)} rows compared, {bad} differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
