"""torchvision's own ResNet-18 and ResNet-50, for nabla's cross-check (ctest/gtest
TorchvisionReference.*, run where PyTorch is: the GPU check). For each architecture writes

    OUT/<arch>.safetensors     model.state_dict() as torchvision has it (safetensors.torch.save_file)
    OUT/<arch>_io.safetensors  "input" [2, 3, 224, 224] float32 and "logits" [2, 1000] float64: the
                               eval-mode logits of the same weights in float64

The weights are torchvision's initialisation (seeded), then three train-mode forwards on random
batches so that the BatchNorm running statistics and num_batches_tracked are not their initial
0 / 1 / 0: loading them must matter.

    python3 tests/torchvision/make_reference.py OUT
    NABLA_TORCHVISION_REF=OUT nabla_tests --gtest_filter='TorchvisionReference.*'
"""
import os
import sys

import torch
import torchvision
from safetensors.torch import save_file


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for arch in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=1000)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(4, 3, 64, 64))
        model.eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"{arch}.safetensors"))
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            logits = model.double()(x.double())
        save_file({"input": x, "logits": logits}, os.path.join(out, f"{arch}_io.safetensors"))
        print(f"{arch}: torchvision {torchvision.__version__}, torch {torch.__version__}, "
              f"{sum(p.numel() for p in model.parameters())} parameters, logits[0, :3] {logits[0, :3].tolist()}")


if __name__ == "__main__":
    main()
