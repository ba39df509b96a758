#!/usr/bin/env bash
# Trainer throughput against PyTorch on the same proxy AlexNet-BN, batch and threads, measured
# side by side (interleaved rounds) in one run; prints medians and the ratios.
#
#   bench/train_vs_pytorch.sh [BATCH...]      default batches: 256 3072
# Environment: THREADS (default 2), ROUNDS (default 3), STEPS (default 10),
# PRECISIONS (ours, default "fp32 fp16 bf16"), JIZHI_BENCH_VENV (default target/bench-venv).
#
# Each round runs our precisions in one process, one step of each in turn
# (`bench train --precision fp32,fp16,bf16`), so their ratio to the first precision holds on a
# loaded machine; then PyTorch. Columns: our images/s, PyTorch's, ours / PyTorch, and ours / our
# first precision (median over rounds, with its range).
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
records=$(mktemp)
trap 'rm -f "$records"' EXIT

ips() { tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_sec"])'; }

printf '%-6s %-10s %12s %12s %8s %22s\n' batch precision "ours img/s" "torch img/s" "/torch" "/ours first (range)"
for batch in "${batches[@]}"; do
  : >"$records"
  torch=()
  for _ in $(seq "$rounds"); do
    # one JSON record per precision, each with its ratio to the first
    "$bin" bench train --batch "$batch" --precision "${precisions// /,}" --threads "$threads" \
      --steps "$steps" 2>/dev/null | grep '^{' >>"$records"
    torch+=("$(OMP_NUM_THREADS=$threads "$venv/bin/python" bench/pytorch_train_bench.py --batch "$batch" --threads "$threads" --steps "$steps" | ips)")
  done
  python3 - "$batch" "$records" "${torch[@]}" <<'PY'
import json, statistics, sys
batch, path, torch = sys.argv[1], sys.argv[2], [float(t) for t in sys.argv[3:]]
t = statistics.median(torch)
by = {}
for line in open(path):
    r = json.loads(line)
    by.setdefault(r["precision"], []).append(r)
for p, rs in by.items():
    o = statistics.median(r["images_per_sec"] for r in rs)
    rel = [r.get("ratio_to_first", 1.0) for r in rs]
    span = f"{statistics.median(rel):.3f}x ({min(rel):.3f}-{max(rel):.3f})"
    print(f"{batch:<6} {p:<10} {o:12.0f} {t:12.0f} {o / t:7.2f}x {span:>22}")
PY
done
