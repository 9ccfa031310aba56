#!/bin/bash
# Issue 17's GPU checks as one run on a lent NVIDIA machine (the `device` tool); never in CI.
#
# Prepare here, once (the machine has jax, flax, optax and orbax, but not ml_collections, and
# reaches no network):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl ml_collections==1.1.0
# then run `bash benchmarks/gpu.sh` there with `.whl` carried, a timeout of ~540 s. What it
# measures, one JSON line per row (benchmarks/train_step.py), under $OUT (or ./gpu_out):
#   - the device (nvidia-smi);
#   - paper and debug nets: step time (1 / steps_per_s), achieved FLOP/s as a share of one large
#     TF32 matmul on the same GPU (`of_bound`: the MFU; f32 matmuls run as TF32, said
#     explicitly by --precision), host share, trials/hour, for K in {1, 8, 32} trials a pack
#     and N in {1, 100} steps a dispatch.
# Targets: paper net of_bound >= 0.4; debug net trials/hour at K = 8 >= 4x that at K = 1.
set -o pipefail
out=${OUT:-gpu_out}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    | tee "$out/device.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/device.txt"
cd benchmarks || exit 1
python3 train_step.py --nets debug,paper --dispatch 1,100 --packs 1,8,32 --steps 200 \
    --rounds 2 --precision tensorfloat32 2>&1 | tee "$out/train_step.jsonl"
