"""PyTorch twin of bench_gpu.cpp: same cases, same JSON lines, same timing (warm-up, then N
iterations between torch.cuda.synchronize calls)."""
import json
import time

import torch


def time_it(f, iters):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def report(name, seconds, metric, value):
    print(json.dumps({"case": name, "seconds": seconds, "metric": metric, "value": value}), flush=True)


def main():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    with torch.no_grad():
        n = 64 << 20
        x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
        b2, b3 = 2.0 * n * 4, 3.0 * n * 4
        t = time_it(lambda: x.clone(), 20); report("copy_64M_f32", t, "GB/s", b2 / t / 1e9)
        t = time_it(lambda: x + y, 20); report("add_64M_f32", t, "GB/s", b3 / t / 1e9)
        t = time_it(lambda: x * y, 20); report("mul_64M_f32", t, "GB/s", b3 / t / 1e9)
        t = time_it(lambda: torch.nn.functional.gelu(x), 20); report("gelu_64M_f32", t, "GB/s", b2 / t / 1e9)
        m = torch.randn(8192, 8192, device=dev)
        mb = 8192.0 * 8192 * 4
        t = time_it(lambda: m.sum(1), 20); report("sum_rows_8192x8192_f32", t, "GB/s", mb / t / 1e9)
        t = time_it(lambda: m.softmax(1), 20); report("softmax_rows_8192x8192_f32", t, "GB/s", 2 * mb / t / 1e9)
        for s in (4096, 8192):
            flops = 2.0 * s ** 3
            for kind in ("f32", "tf32", "bf16"):
                torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
                dt = torch.bfloat16 if kind == "bf16" else torch.float32
                a, b = torch.randn(s, s, device=dev, dtype=dt), torch.randn(s, s, device=dev, dtype=dt)
                t = time_it(lambda: a @ b, 20 if s == 4096 else 5)
                report(f"matmul_{s}_{kind}", t, "TFLOP/s", flops / t / 1e12)
            torch.backends.cuda.matmul.allow_tf32 = False
        u, v = torch.randn(4, device=dev), torch.randn(4, device=dev)
        t = time_it(lambda: u + v, 20000); report("tiny_add_launch", t, "us/op", t * 1e6)
    w = torch.randn(4, device=dev, requires_grad=True)
    t = time_it(lambda: (u * w).relu().sum().backward(), 5000); report("tiny_fwd_bwd", t, "us/iter", t * 1e6)


if __name__ == "__main__":
    main()
