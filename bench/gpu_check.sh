#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU and FAISS built with GPU support
# (the GPU Docker image, or `pip install faiss-gpu-cu12` in place of faiss-cpu):
#   1. tests/index/test_gpu.py: GPU search equals CPU search (Flat, IVF; removals, upserts,
#      filtered searches);
#   2. the index benchmark with its searches on the GPU, results in bench/results/gpu/;
#   3. where `make demo-artifacts` has run: the service benchmark with the encoder on the GPU
#      (XMR_DEVICE=cuda), the setting its 0.8x-of-raw goal is meant for: on 2 CPU cores the
#      encoder shares the cores with the web layer and cannot reach it (bench/results/README.md);
#   4. the text encoder on ONNX Runtime (XMR_ENCODER_RUNTIME=onnx and onnx-int8, CPU
#      execution): its tests against torch, and the three runtimes side by side on this
#      machine's cores.
# Usage: bench/gpu_check.sh [OUT_DIR]    (PY=/path/to/python to choose the interpreter; the
# service benchmark needs wrk, the Debian package)
# Not run yet: no GPU was available when it was written.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-bench/results/gpu}
mkdir -p "$OUT"

"$PY" - <<'PY'
import sys
import faiss
n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
print(f"faiss {faiss.__version__}, GPUs visible: {n}")
if n == 0 or not hasattr(faiss, "StandardGpuResources"):
    sys.exit("no GPU FAISS here: install faiss-gpu (same `faiss` module) on a GPU machine")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== 1. GPU vs CPU search equality"
"$PY" -m pytest -q -m gpu tests/index/test_gpu.py -rs 2>&1 | tee "$OUT/test_gpu.log"

echo "== 2. index benchmark, searches on the GPU (synthetic vectors only: no encoder needed)"
"$PY" -m bench.index_bench --gpu --sets same-distribution --out "$OUT" \
    2>&1 | tee "$OUT/bench.log"
echo "results: $OUT/index.json $OUT/index.md $OUT/index.png"

echo "== 3. service benchmark, the encoder on the GPU"
if [ -f artifacts/runs/default/checkpoint.pt ] && [ -f artifacts/indexes/default/CURRENT ]; then
    XMR_DEVICE=cuda "$PY" -m bench.service_bench --checkpoint artifacts/runs/default/checkpoint.pt \
        --data artifacts/data/openmoji --index artifacts/indexes/default --out "$OUT" \
        2>&1 | tee "$OUT/service.log"
    echo "results: $OUT/service.json $OUT/service.md $OUT/service.png"
else
    echo "skipped: no default checkpoint and index here (run make demo-artifacts first)"
fi

echo "== 4. the text encoder on ONNX Runtime (CPU) against torch"
"$PY" -m pytest -q tests/inference/test_onnx_text.py 2>&1 | tee "$OUT/test_onnx.log"
if [ -f artifacts/runs/default/checkpoint.pt ] && [ -f artifacts/indexes/default/CURRENT ]; then
    XMR_DEVICE=cpu "$PY" -m bench.service_bench --checkpoint artifacts/runs/default/checkpoint.pt \
        --data artifacts/data/openmoji --index artifacts/indexes/default --runtimes torch onnx onnx-int8 \
        --out "$OUT" 2>&1 | tee "$OUT/runtimes.log"
    echo "results: $OUT/runtimes.json $OUT/runtimes.md $OUT/runtimes.png"
fi
