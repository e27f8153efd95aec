"""PyTorch twin of `resnet --synthetic` on a GPU: torchvision's ResNet (or the CIFAR stem: 3x3
stride-1 conv1, no max-pool, as the nabla example builds it), random images [N, 3, S, S] and 1000
classes held on the host, each batch copied to the GPU as the example's DataLoader does; SGD
momentum 0.9 nesterov, weight decay 5e-4, one-cycle schedule, cross-entropy with label smoothing
0.1. Eager mode, float32 with TF32 off (nabla's float32 default), cudnn.benchmark off (PyTorch's
default). Times the train steps after the first (warm-up) one, each waited for, and prints the
same line as the example:

    train step: X img/s over N images after one warm-up batch (resnet50, 224x224, batch 64)

    python3 benchmarks/gpu/resnet_torch.py [--arch resnet50] [--batch-size 64] [--image-size 224]
                                           [--limit N] [--cifar-stem] [--tf32] [--channels-last]
                                           [--amp bf16|f16]

--amp is PyTorch's AMP recipe, as the example's: autocast around forward and loss, float32
weights and optimizer, a GradScaler for f16.
"""
import argparse
import time

import torch
import torch.nn as nn
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--limit", type=int, default=0, help="images (default 4 batches)")
    p.add_argument("--cifar-stem", action="store_true")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and matmuls")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", choices=["none", "bf16", "f16"], default="none")
    a = p.parse_args()
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.amp)
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    dev = torch.device("cuda")

    torch.manual_seed(1000)
    n = a.limit if a.limit > 0 else 4 * a.batch_size
    images = torch.randn(n, 3, a.image_size, a.image_size)
    labels = torch.randint(0, 1000, (n,))

    torch.manual_seed(1)
    model = getattr(torchvision.models, a.arch)(num_classes=1000)
    if a.cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model = model.to(dev)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    steps = n // a.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=a.amp == "f16")
    perm = torch.randperm(n)
    model.train()
    timed, timed_images = 0.0, 0
    for i in range(steps):
        idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
        t0 = time.perf_counter()
        x = images[idx].to(dev).contiguous(memory_format=fmt)
        y = labels[idx].to(dev)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss.item()  # waits for the device
        if i > 0:
            timed += time.perf_counter() - t0
            timed_images += len(idx)
    print(f"train step: {timed_images / max(timed, 1e-9):.1f} img/s over {timed_images} images after one warm-up batch "
          f"({a.arch}, {a.image_size}x{a.image_size}, batch {a.batch_size}"
          f"{', amp ' + a.amp if amp_dtype else ''}{', channels-last' if a.channels_last else ''}); peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB; torch {torch.__version__}")


if __name__ == "__main__":
    main()
