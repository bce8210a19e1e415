"""cuDNN's time for the VGG10 conv shapes, for the ratio against nudge's WebGPU kernels.

Forward, backward-data and backward-filter of each 3x3 stride-1 pad-1 conv of VGG10 at the
given batch and input size, in fp32 with TF32 off and in fp16, channels-last (NHWC, as
nudge stores activations), cudnn.benchmark on (cuDNN picks its fastest algorithm first).
Timed with CUDA events: median of --reps runs after warm-up. Prints a table and writes JSON.
"""
import argparse
import json
import statistics

import torch

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--input", type=int, default=224)
p.add_argument("--reps", type=int, default=10)
p.add_argument("--json", default=None)
args = p.parse_args()

torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")

s = args.input
layers = [  # (name, H, Ci, Co): VGG10's convs; conv7 and conv8 share a shape
    ("L1", s, 3, 64), ("L2", s // 2, 64, 128), ("L3", s // 4, 128, 256), ("L4", s // 4, 256, 256),
    ("L5", s // 8, 256, 512), ("L6", s // 8, 512, 512), ("L7,L8", s // 16, 512, 512),
]


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


results = []
for name, H, Ci, Co in layers:
    flops = 2 * args.batch * H * H * Co * 9 * Ci
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(args.batch, Ci, H, H, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        w = torch.randn(Co, Ci, 3, 3, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        dy = torch.randn(args.batch, Co, H, H, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        fwd = timed(lambda: torch.nn.functional.conv2d(x, w, None, 1, 1), args.reps)

        def back(mask):
            return torch.ops.aten.convolution_backward(dy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        bwd_data = timed(lambda: back([True, False, False]), args.reps)
        bwd_filter = timed(lambda: back([False, True, False]), args.reps)
        for op, ms in (("conv2d", fwd), ("conv2dBackwardData", bwd_data), ("conv2dBackwardFilter", bwd_filter)):
            results.append({"layers": name, "op": op, "dtype": str(dtype).replace("torch.", ""), "N": args.batch, "H": H,
                            "Ci": Ci, "Co": Co, "ms": ms, "gflops": flops / (ms * 1e6)})
        del x, w, dy
        torch.cuda.empty_cache()

print(f"# cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {args.batch}, "
      f"input {s}, TF32 off, channels_last, median of {args.reps} (CUDA events)")
print(f"| layers | op | shape | fp32 ms | fp32 GFLOP/s | fp16 ms | fp16 GFLOP/s |")
print("|---|---|---|---:|---:|---:|---:|")
for r32 in (r for r in results if r["dtype"] == "float32"):
    r16 = next(r for r in results if r["dtype"] == "float16" and r["layers"] == r32["layers"] and r["op"] == r32["op"])
    shape = f"{r32['N']}x{r32['H']}x{r32['H']}x{r32['Ci']}->{r32['Co']}"
    print(f"| {r32['layers']} | {r32['op']} | {shape} | {r32['ms']:.3f} | {r32['gflops']:.0f} | {r16['ms']:.3f} | {r16['gflops']:.0f} |")
if args.json:
    with open(args.json, "w") as f:
        json.dump({"cudnn": torch.backends.cudnn.version(), "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                   "results": results}, f, indent=1)
