#!/usr/bin/env python3
"""Checks an ONNX file nabla exported: onnx.checker (full_check, with shape inference), then
onnxruntime on the inputs saved beside it, against nabla's outputs.

  check_onnx.py MODEL.onnx IO.safetensors [--rtol R] [--atol A] [--max-rel M]

--max-rel M replaces the elementwise bound with max |ort - nabla| <= M * max |nabla| (int8 models,
where a code off by one at a rounding tie moves an output by a quantization step).

IO.safetensors holds the inputs and nabla's outputs for one or more batch sizes, named
"<input name>@<tag>" and "<output name>@<tag>" (the tag groups one run: "b4", "b7"). Exit 0 when
every run agrees; exit 77 when onnx/onnxruntime are missing (the C++ test then skips)."""
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file
except ImportError as e:  # the caller skips
    print(f"check_onnx: {e}", file=sys.stderr)
    sys.exit(77)


def main():
    args = sys.argv[1:]
    rtol, atol, max_rel = 1e-4, 1e-5, None
    if "--rtol" in args:
        i = args.index("--rtol"); rtol = float(args[i + 1]); del args[i:i + 2]
    if "--atol" in args:
        i = args.index("--atol"); atol = float(args[i + 1]); del args[i:i + 2]
    if "--max-rel" in args:
        i = args.index("--max-rel"); max_rel = float(args[i + 1]); del args[i:i + 2]
    model_path, io_path = args
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    tensors = load_file(io_path)
    tags = sorted({k.split("@")[1] for k in tensors})
    worst = 0.0
    for tag in tags:
        feeds = {n: tensors[f"{n}@{tag}"] for n in in_names}
        got = sess.run(None, feeds)
        for name, g in zip(out_names, got):
            want = tensors[f"{name}@{tag}"]
            if g.shape != want.shape:
                print(f"{tag} {name}: onnxruntime shape {g.shape}, nabla {want.shape}")
                return 1
            if g.dtype == np.bool_ or np.issubdtype(g.dtype, np.integer):
                if not np.array_equal(g, want):
                    print(f"{tag} {name}: onnxruntime and nabla differ ({np.sum(g != want)} elements)")
                    return 1
                continue
            g64, w64 = g.astype(np.float64), want.astype(np.float64)
            err = np.max(np.abs(g64 - w64) / (atol + rtol * np.abs(w64))) if g.size else 0.0
            rel = np.max(np.abs(g64 - w64)) / max(np.max(np.abs(w64)), 1e-30) if g.size else 0.0
            worst = max(worst, rel)
            print(f"{tag} {name} {list(g.shape)}: max |ort - nabla| / max |nabla| = {rel:.2e}")
            if max_rel is not None:
                if rel > max_rel:
                    print(f"{tag} {name}: relative error {rel:.2e} above --max-rel {max_rel}")
                    return 1
            elif err > 1.0:
                print(f"{tag} {name}: outside rtol {rtol} atol {atol} (worst element {err:.2f}x the tolerance)")
                return 1
    print(f"ok: {len(model.graph.node)} nodes, opset {model.opset_import[0].version}, "
          f"{len(tags)} batch sizes, worst relative error {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
