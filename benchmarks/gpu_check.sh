#!/usr/bin/env bash
# The GPU path in one prepared command, for a lent GPU machine (finishes within 8 minutes on one
# card): the CUDA-marked tests, then benchmarks/gpu_check.py (matmul peak, the DDPM CIFAR-10 step
# against diffusers with MFU, a small model eager vs torch.compile reduce-overhead, 1/2/4 workers
# sharing the GPU, a forced out-of-memory), then search_spaces/ddpm_cifar10.yaml for 3 trials on
# synthetic 32x32 data. Figures go to $OUT/gpu_check.json, everything printed to $OUT/gpu_check.log.
#
#   benchmarks/gpu_check.sh                 # on the GPU machine; OUT defaults to ./gpu_check_out
#   OUT=/tmp/gc benchmarks/gpu_check.sh --dry-run   # tiny sizes on the CPU (tests/test_gpu_check.py)
#
# Each step has its own time limit, so one that hangs cannot take the others' time; the exit
# status is non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""
[[ "${1:-}" == "--dry-run" ]] && DRY="--dry-run"
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start))s" | tee -a "$LOG"
  [[ $rc -ne 0 ]] && status=1
  return 0
}

nvidia-smi >> "$LOG" 2>&1 || echo "(no nvidia-smi)" >> "$LOG"
step cuda-tests 120 python -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests
step measure 300 python benchmarks/gpu_check.py $DRY --out "$OUT/gpu_check.json"
DATA="data={source: synthetic, image_size: 32, channels: 3, num_images: 4096}"  # replaces cifar10 (no download)
if [[ -n "$DRY" ]]; then  # a 35M-parameter model on the CPU would take minutes: check the command only
  step ddpm-study 60 python -m archsearch.cli validate search_spaces/ddpm_cifar10.yaml \
    --set study.device=cpu --set "$DATA"
else
  step ddpm-study 240 python -m archsearch.cli run search_spaces/ddpm_cifar10.yaml --results-dir "$OUT/results" \
    --set study.name=gpu_check_ddpm --set study.trials=3 --set "$DATA" \
    --set train.steps=300 --set train.seconds=40 --set eval.num_images=256
  python -m archsearch.cli results "$OUT/results/gpu_check_ddpm" --format csv >> "$LOG" 2>&1
fi
echo "figures: $OUT/gpu_check.json; log: $LOG; status $status" | tee -a "$LOG"
exit $status
