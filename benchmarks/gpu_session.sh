#!/bin/bash
# The GPU measurements in one run, for a short lease of one GPU (the timeouts total 8 minutes):
#
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#
# Needs jax with a GPU backend, flax, optax, numpy and absl (PyTorch optional), not TFDS or
# grain. Writes to $OUT: versions.log; mfu.log, the mfu.py tables (dcgan64 at batch 1024 and
# 64 in bf16 and fp32 beside PyTorch eager and torch.compile; udacity32 beside PyTorch eager;
# udacity32 with 10 steps per call); profile.log, where the dcgan64 bf16 step at batch 1024
# spends its time; RESULTS.md, benchmarks/RESULTS.md with the new sections appended.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/facegan_gpu}
mkdir -p "$OUT"
python=${PYTHON:-python3}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $python -c 'import jax, flax, optax, numpy; print("jax", jax.__version__, "flax",
flax.__version__, "optax", optax.__version__, "numpy", numpy.__version__); print(jax.devices())'
  $python -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'
} 2>&1 | tee "$OUT/versions.log"

mfu() { timeout "$1" $python benchmarks/mfu.py --write "${@:2}" 2>&1 | tee -a "$OUT/mfu.log"; }
mfu 240 --presets=dcgan64 --batch_sizes=1024,64 --precisions=bf16,fp32
mfu 90 --presets=udacity32 --batch_sizes=1024,64 --precisions=bf16,fp32 --torch_compile=false
mfu 60 --presets=udacity32 --batch_sizes=1024,64 --precisions=bf16 --steps_per_call=10 \
    --torch=false
timeout 90 $python benchmarks/profile_step.py --preset=dcgan64 --batch_size=1024 \
    --precision=bf16 --steps=5 --top=30 2>&1 | tee "$OUT/profile.log"
cp benchmarks/RESULTS.md "$OUT/"
