#!/usr/bin/env bash
# Trainer throughput against PyTorch on the same proxy AlexNet-BN, batch and threads, measured
# side by side (interleaved rounds) in one run; prints medians and the ratio.
#
#   bench/train_vs_pytorch.sh [BATCH...]      default batches: 256 3072
# Environment: THREADS (default 2), ROUNDS (default 3), STEPS (default 10),
# PRECISIONS (ours, default "fp32 fp16 bf16"), JIZHI_BENCH_VENV (default target/bench-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
steps=${STEPS:-10}
precisions=${PRECISIONS:-fp32 fp16 bf16}
venv=${JIZHI_BENCH_VENV:-target/bench-venv}
batches=("$@")
[ ${#batches[@]} -eq 0 ] && batches=(256 3072)

if ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  echo "installing PyTorch into $venv (once)..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch numpy
fi
cargo build --release -q
bin=target/release/jizhi-tune

ips() { tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])'; }
median() { python3 -c 'import statistics,sys; print(statistics.median(float(v) for v in sys.argv[1:]))' "$@"; }

printf '%-6s %-10s %12s %12s %8s\n' batch precision "ours img/s" "torch img/s" ratio
for batch in "${batches[@]}"; do
  declare -A ours=()
  torch=()
  for _ in $(seq "$rounds"); do
    for p in $precisions; do
      ours[$p]+="$("$bin" bench train --batch "$batch" --precision "$p" --threads "$threads" --steps "$steps" 2>/dev/null | ips) "
    done
    torch+=("$(OMP_NUM_THREADS=$threads "$venv/bin/python" bench/pytorch_train_bench.py --batch "$batch" --threads "$threads" --steps "$steps" | ips)")
  done
  t=$(median "${torch[@]}")
  for p in $precisions; do
    # shellcheck disable=SC2086
    o=$(median ${ours[$p]})
    printf '%-6s %-10s %12.0f %12.0f %7.2fx\n' "$batch" "$p" "$o" "$t" "$(python3 -c "print($o/$t)")"
  done
  unset ours
done
