"""PyTorch twin of examples/mnist on a GPU: the same network (PyTorch's examples/mnist Net, as
`mnist --model cnn` builds it), batch 64, Adam lr 2e-3, StepLR gamma 0.4, the whole data set kept
on the GPU and batches gathered there, as the nabla example does. Prints the same epoch line
("epoch N: train loss ..., test accuracy ...%, X s, Y img/s"), so scripts/gpu-check.sh reads
both the same way. Only the training loop is timed (not the evaluation), as in the example.

    python3 benchmarks/gpu/mnist_torch.py --data DIR [--epochs 2] [--batch-size 64] [--amp none|bf16|f16]

--amp: torch.autocast("cuda", dtype) around forward and loss, and torch.amp.GradScaler for f16, as
the nabla example's --amp does (PyTorch's AMP recipe).
"""
import argparse
import gzip
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def load(folder, train):
    prefix = "train" if train else "t10k"
    find = lambda stem: next(os.path.join(folder, stem + s) for s in (".gz", "")
                             if os.path.exists(os.path.join(folder, stem + s)))
    images = read_idx(find(f"{prefix}-images-idx3-ubyte")).float().div_(255)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte")).long()
    # nabla's mnist_dataset normalises with MNIST's mean and standard deviation, as PyTorch's example
    return ((images - 0.1307) / 0.3081).unsqueeze(1), labels


def make_model():
    return nn.Sequential(nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(128, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--gamma", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--amp", choices=["none", "bf16", "f16"], default="none")
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(a.seed)
    x, y = (t.to(dev) for t in load(a.data, True))
    xt, yt = (t.to(dev) for t in load(a.data, False))
    model = make_model().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, a.gamma)
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=a.amp == "f16")
    n = x.shape[0]
    print(f"model cnn, {sum(q.numel() for q in model.parameters())} parameters; device {torch.cuda.get_device_name()}; "
          f"torch {torch.__version__}; cudnn {torch.backends.cudnn.version()}; batch {a.batch_size}", flush=True)
    for epoch in range(1, a.epochs + 1):
        model.train()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        batches = 0
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            opt.zero_grad()
            with torch.autocast("cuda", dtype=amp_dtype or torch.float16, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach()
            batches += 1
        train_loss = loss_sum.item() / batches  # synchronises: the epoch's work is done
        seconds = time.perf_counter() - t0
        sched.step()
        model.eval()
        correct, tl = 0, 0.0
        with torch.no_grad(), torch.autocast("cuda", dtype=amp_dtype or torch.float16, enabled=amp_dtype is not None):
            for i in range(0, xt.shape[0], 1000):
                out = model(xt[i:i + 1000])
                tl += F.cross_entropy(out, yt[i:i + 1000], reduction="sum").item()
                correct += (out.argmax(1) == yt[i:i + 1000]).sum().item()
        m = xt.shape[0]
        print(f"epoch {epoch}: train loss {train_loss:.4f}, test loss {tl / m:.4f}, test accuracy "
              f"{100 * correct / m:.2f}% ({correct}/{m}), {seconds:.2f} s, {n / seconds:.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
