"""Joins nudge's bench-conv JSON (WebGPU, default and tuned) with torch_conv.py's (cuDNN) per
shape and op, and prints the ratio table: nudge tuned GFLOP/s as a share of cuDNN fp32/fp16."""
import json
import sys

nudge = json.load(open(sys.argv[1]))
cudnn = json.load(open(sys.argv[2]))
print(f"# nudge on {nudge['adapter']['name']} ({nudge['adapter']['description']}) vs cuDNN {cudnn['cudnn']} on {cudnn['device']}")
print("| layers | op | shape | nudge default GFLOP/s | nudge tuned GFLOP/s | tfjs GFLOP/s | cuDNN fp32 GFLOP/s | tuned / cuDNN fp32 | cuDNN fp16 GFLOP/s | tuned / cuDNN fp16 |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in nudge["results"]:
    g = r["geometry"]
    def find(dtype):
        for c in cudnn["results"]:
            if c["op"] == r["op"] and c["dtype"] == dtype and c["N"] == g["N"] and c["H"] == g["H"] and c["Ci"] == g["Ci"] and c["Co"] == g["Co"]:
                return c
        return None
    c32, c16 = find("float32"), find("float16")
    gf = lambda ms: r["flops"] / (ms * 1e6)
    tuned = gf(r["tunedMs"])
    tf = f"{gf(r['tfjsMs']):.0f}" if r.get("tfjsMs") else ""
    f32 = f"{c32['gflops']:.0f} | {100 * tuned / c32['gflops']:.1f}%" if c32 else " | "
    f16 = f"{c16['gflops']:.0f} | {100 * tuned / c16['gflops']:.1f}%" if c16 else " | "
    print(f"| {r['layers']} | {r['op']} | {r['shape']} | {gf(r['defaultMs']):.0f} | {tuned:.0f} | {tf} | {f32} | {f16} |")
