#!/usr/bin/env bash
# The speed suite on a GPU machine, in one short run (about 5 minutes on one H200 is the plan; not
# yet run: no GPU has been lent to this project so far).
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#
# Needs a Python with jax (CUDA build), flax, optax and, for the cuDNN column, torch (CUDA build):
# the benchmarks import only the library (deeprnn_jax's core), not the runner. Writes
# OUTPUT_DIR/BENCHMARKS-gpu.md (the generated report: every execution path vs PyTorch/cuDNN and a
# Flax stack, compile times, 8 seeds vmapped/looped vs separate, associative vs sequential scan at
# T 2048; then nine cells at equal parameters, each execution path, and where the hoisted and parallel
# forms overtake the per-step one, T 256 to 4096; then packed vs padded batches on PTB's sentence
# lengths, benchmarks.packing) and OUTPUT_DIR/profile-medium-lstm.txt (where a
# medium LSTM step's time goes).
set -euo pipefail
out="${1:-${OUT:-.}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c 'import jax, torch; print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__, torch.cuda.is_available())'
python3 -m benchmarks.bench --executions --repeats 3 --seconds 0.5 --output "$out/BENCHMARKS-gpu.md"
# Nine cells, one of each kind of path (its length tables race every path of every cell: 19 would not fit).
python3 -m benchmarks.cells_bench --cells lstm,gru,mingru,lru,rglru,mamba,mlstm,gated_deltanet,attention \
  --budget 250000 --time 256 --lengths 256,1024,4096 --repeats 2 --seconds 0.3 --output "$out/BENCHMARKS-gpu.md"
python3 -m benchmarks.packing --cells lstm,mingru,gated_deltanet,attention --output "$out/BENCHMARKS-gpu.md"
python3 -m benchmarks.lm --rounds 3 --output "$out/BENCHMARKS-gpu.md"   # the PTB word LM step vs PyTorch (cuDNN)
for execution in time layer; do
  python3 -m benchmarks.profile --shape medium --cell lstm --execution "$execution" --top 15
done > "$out/profile-medium-lstm.txt" 2>&1
