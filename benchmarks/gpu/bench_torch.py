"""PyTorch twin of bench_gpu.cpp: same cases, same JSON lines, same timing (warm-up, then the median
of 5 batches of N iterations between torch.cuda.synchronize calls)."""
import json
import time

import torch


def time_it(f, iters):
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    batches = []
    for _ in range(5):  # the median of 5 timed batches, as bench_gpu.cpp
        t0 = time.perf_counter()
        for _ in range(iters):
            f()
        torch.cuda.synchronize()
        batches.append((time.perf_counter() - t0) / iters)
    return sorted(batches)[2]


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
    # conv2d forward + backward, as bench_gpu.cpp (f32 = no TF32 anywhere, as nabla's default)
    for name, n, c, h, w_, o, k, pad in (("conv_mnist_64x32x26x26_k3", 64, 32, 26, 26, 64, 3, 0),
                                         ("conv_resnet_32x64x56x56_k3", 32, 64, 56, 56, 64, 3, 1),
                                         ("conv_resnet_32x256x56x56_k1", 32, 256, 56, 56, 64, 1, 0)):
        for kind in ("f32", "tf32", "bf16"):
            torch.backends.cudnn.allow_tf32 = kind == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
            dt = torch.bfloat16 if kind == "bf16" else torch.float32
            x = torch.randn(n, c, h, w_, device=dev, dtype=dt, requires_grad=True)
            wt = torch.randn(o, c, k, k, device=dev, dtype=dt, requires_grad=True)
            ho, wo = h + 2 * pad - k + 1, w_ + 2 * pad - k + 1
            gy = torch.randn(n, o, ho, wo, device=dev, dtype=dt)
            t = time_it(lambda: torch.nn.functional.conv2d(x, wt, None, 1, pad).backward(gy), 20)
            report(f"{name}_{kind}_fwd_bwd", t, "TFLOP/s", 3.0 * 2 * n * o * c * k * k * ho * wo / t / 1e12)
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        u, v = torch.randn(4, device=dev), torch.randn(4, device=dev)
        t = time_it(lambda: u + v, 20000); report("tiny_add_launch", t, "us/op", t * 1e6)
    w = torch.randn(4, device=dev, requires_grad=True)
    t = time_it(lambda: (u * w).relu().sum().backward(), 5000); report("tiny_fwd_bwd", t, "us/iter", t * 1e6)


if __name__ == "__main__":
    main()
