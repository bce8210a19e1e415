#!/bin/bash
# Prepares .gpu-carry/ (ignored by git) for bench/gpu/run.sh, which runs on a GPU machine with
# no internet and no Node: a compressed Node binary, Dawn's native module, one bundled .mjs of
# nudge's GPU commands (tfjs included), and the Vulkan loader / GL vendor-neutral dispatch
# packages (Debian amd64 .debs) in case the machine lacks them. Run from anywhere after
# `bash tools/setup.sh`; then call the device with carry [".gpu-carry"] and `bash bench/gpu/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
C=.gpu-carry
mkdir -p "$C/gl" "$C/webgpu/dist/linux-x64"
grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude

node_bin=$(readlink -f "$(command -v node)")
if [ ! -s "$C/node.xz" ]; then
  echo "compressing $node_bin (a minute or two)"
  xz -T2 -9 -c "$node_bin" > "$C/node.xz.tmp" && mv "$C/node.xz.tmp" "$C/node.xz"
fi
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$C/webgpu/"
if [ ! -s "$C/webgpu/dist/linux-x64/dawn.node.xz" ] || [ node_modules/webgpu/dist/linux-x64/dawn.node -nt "$C/webgpu/dist/linux-x64/dawn.node.xz" ]; then
  xz -T2 -9 -c node_modules/webgpu/dist/linux-x64/dawn.node > "$C/webgpu/dist/linux-x64/dawn.node.xz"
fi
# One file: everything but Dawn's native module is bundled; `require` is defined for the
# CommonJS parts of tfjs.
npx esbuild bench/gpu/main.ts --bundle --platform=node --format=esm --target=node20 --external:webgpu \
  --log-level=warning --outfile="$C/nudge-gpu.mjs" \
  --banner:js="import { createRequire as __nudgeCreateRequire } from 'node:module'; const require = __nudgeCreateRequire(import.meta.url);"
if ! ls "$C"/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd "$C/gl" && apt-get -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 download \
    libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh "$C"
