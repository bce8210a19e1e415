#!/bin/bash
# The GPU check, in one device call (see bench/gpu/pack.sh for what it needs carried):
#   1. probe: GPU, driver, Vulkan loader and ICD files, Node (cheap, always printed);
#   2. unpack Node and Dawn under /tmp, install the carried Vulkan loader/GLVND if the
#      machine has none, find NVIDIA's Vulkan ICD or write a manifest for its driver library;
#   3. nudge doctor; nudge tune of the VGG10 convs at batch 64; bench conv (default, tuned,
#      tfjs-webgpu) on the same shapes; cuDNN fp32/fp16 on the same shapes with PyTorch;
#      the ratio table; 4. bench step (EP vs BP per training step: fused and unfused conv
#      blocks, the faster schedules). NUDGE_GPU_ONLY=step runs 1, 2 and 4 only.
# Everything goes to $OUT (the device tool brings it back). Each stage runs even if an
# earlier optional one failed, and says what failed.
set -u
OUT=${OUT:-/tmp/nudge-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
cd "$(dirname "$0")/../.."
C=$PWD/.gpu-carry
BATCH=${NUDGE_GPU_BATCH:-64}
BUDGET=${NUDGE_GPU_BUDGET:-5s}
# On lavapipe (the dry run) shader compilation makes bench conv's f16 tuning take minutes:
# NUDGE_GPU_BENCH_TIMEOUT raises its limit (seconds).
INPUT=${NUDGE_GPU_INPUT:-224}
W=/tmp/nudge-gpu
mkdir -p "$W/node_modules/webgpu/dist/linux-x64"

echo "== probe $(date -u +%FT%TZ)"
nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
ldconfig -p | grep -iE 'libvulkan|libGLX_nvidia|libEGL_nvidia|libGLdispatch' | head -20
find / -xdev \( -name 'nvidia_icd*.json' -o -name 'libGLX_nvidia.so*' -o -name 'libEGL_nvidia.so*' -o -name 'libvulkan.so*' \) 2>/dev/null | head -20
which node && node --version
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'

echo "== unpack"
xz -dc "$C/node.xz" > "$W/node" && chmod +x "$W/node"
cp "$C/webgpu/package.json" "$C/webgpu/index.js" "$W/node_modules/webgpu/"
xz -dc "$C/webgpu/dist/linux-x64/dawn.node.xz" > "$W/node_modules/webgpu/dist/linux-x64/dawn.node"
cp "$C/nudge-gpu.mjs" "$W/"
"$W/node" --version || { echo "FATAL: the carried node does not run here"; exit 1; }
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  echo "no Vulkan loader here: installing the carried libvulkan1 and GLVND"
  for f in "$C"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=""
for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json; do
  [ -f "$f" ] && { icd=$f; break; }
done
if [ -z "$icd" ]; then
  lib=$(find / -xdev \( -name 'libEGL_nvidia.so.0' -o -name 'libGLX_nvidia.so.0' \) 2>/dev/null | head -1)
  if [ -n "$lib" ]; then
    icd=/tmp/nvidia_icd.json
    printf '{ "file_format_version": "1.0.1", "ICD": { "library_path": "%s", "api_version": "1.3.0" } }\n' "$lib" > "$icd"
    echo "no NVIDIA ICD manifest: wrote $icd for $lib"
  else
    echo "FATAL: no NVIDIA Vulkan driver library (libGLX_nvidia / libEGL_nvidia) on this machine: WebGPU cannot reach this GPU"
  fi
fi
[ -n "$icd" ] && { export VK_ICD_FILENAMES=$icd VK_DRIVER_FILES=$icd; cat "$icd"; }
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_CACHE_HOME=$W/cache
NG="$W/node $W/nudge-gpu.mjs"

echo "== doctor"
$NG doctor --json > "$OUT/doctor.json"; rc=$?
cat "$OUT/doctor.json"
[ $rc -eq 0 ] || { echo "FATAL: nudge doctor failed (exit $rc)"; }
TOGGLES=""
if [ $rc -eq 0 ]; then
  echo "== doctor with the NVIDIA f16 and unsafe-API toggles (shader-f16, subgroup matrices?)"
  timeout 60 $NG doctor --json --toggle vulkan_enable_f16_on_nvidia --toggle allow_unsafe_apis > "$OUT/doctor-toggles.json" \
    && TOGGLES=vulkan_enable_f16_on_nvidia,allow_unsafe_apis
  grep -E '"(shader-f16|chromium-experimental-subgroup-matrix|subgroups)"|"ok"' "$OUT/doctor-toggles.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("subgroup matrices:", d.get("subgroupMatrixConfigs"), "tiles:", d.get("matrixTiles"))' "$OUT/doctor-toggles.json"
  # With them, the f16 column of bench conv may pick f16 tiles and subgroup-matrix (tensor core) tiles.
  [ -n "$TOGGLES" ] && echo "tune and bench conv run with NUDGE_DAWN_TOGGLES=$TOGGLES"
fi

# NUDGE_GPU_ONLY=step: skip the conv tuning and the cuDNN comparison (issue 6's step timings only).
ONLY=${NUDGE_GPU_ONLY:-}
if [ $rc -eq 0 ] && [ "$ONLY" != step ]; then
  echo "== tune VGG10 convs, batch $BATCH, budget $BUDGET per shape"
  NUDGE_DAWN_TOGGLES=$TOGGLES timeout 240 $NG tune --model vgg10 --batch "$BATCH" --input "$INPUT" --ops conv2d,conv2dBackwardData,conv2dBackwardFilter \
    --budget "$BUDGET" --json "$OUT/tune.json" || echo "tune failed or timed out (exit $?)"
  echo "== bench conv (default, tuned, tfjs-webgpu), all three ops"
  NUDGE_DAWN_TOGGLES=$TOGGLES timeout "${NUDGE_GPU_BENCH_TIMEOUT:-120}" $NG bench conv --models vgg10 --batch-vgg10 "$BATCH" --input-vgg10 "$INPUT" --ops conv2d,conv2dBackwardData,conv2dBackwardFilter \
    --budget 1s --reps "${NUDGE_GPU_REPS:-10}" --json "$OUT/bench-conv.json" || echo "bench conv failed (exit $?)"
fi

if [ "$ONLY" != step ]; then
  echo "== PyTorch cuDNN on the same shapes"
  PYTHONUNBUFFERED=1 timeout 90 python3 bench/gpu/torch_conv.py --batch "$BATCH" --input "$INPUT" --json "$OUT/cudnn.json"
fi

if [ -f "$OUT/bench-conv.json" ] && [ -f "$OUT/cudnn.json" ]; then
  echo "== nudge vs cuDNN"
  python3 bench/gpu/compare.py "$OUT/bench-conv.json" "$OUT/cudnn.json" | tee "$OUT/compare.md"
fi
cp "$W"/cache/nudge/tune/*.json "$OUT/tune-cache.json" 2>/dev/null
if [ $rc -eq 0 ] && [ "${NUDGE_GPU_STEP:-1}" = 1 ]; then
  SB=${NUDGE_GPU_STEP_BATCH:-64}
  echo "== bench step: EP-centered, EP-random, BP per training step, fused and unfused conv blocks"
  timeout 150 $NG bench step --model vgg5 --batch "$SB" --input 32 --reps 5 --fuse both || echo "bench step vgg5 failed (exit $?)"
  echo "== bench step: faster schedules (goal c): top-down K 3 and K 2, the double batch"
  for opt in "--sweep topdown --K 3" "--sweep topdown --K 2" "--double-batch true"; do
    timeout 60 $NG bench step --model vgg5 --batch "$SB" --input 32 --reps 5 --algorithms ep-centered,bp --per-layer false $opt || echo "bench step vgg5 $opt failed (exit $?)"
  done
  timeout 100 $NG bench step --model vgg10 --batch "$SB" --input "${NUDGE_GPU_STEP_INPUT:-64}" --reps 3 || echo "bench step vgg10 failed (exit $?)"
fi
echo "== done $(date -u +%FT%TZ)"
