#!/usr/bin/env bash
# How well short runs rank learning rates at the 64K-equivalent batch (3072 on the embedded
# data): the same LARS fp16 trial at each rate in RATES, run with the 2-epoch schedule compressed
# into one epoch (20 steps) and in full (2 epochs, 40 steps), per seed; prints the val top-1 of
# both and the Spearman rank correlation between them (diverged runs count as 0 %).
#
# Usage: bench/fidelity_check.sh     (SEEDS="2018 2019", RATES, WARMUP=0.5 may be set; about
# 12 minutes on 2 cores for the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-2018 2019}
RATES=${RATES:-0.125 0.25 0.5 1 2 4}
WARMUP=${WARMUP:-0.5}
cargo build --release -q
bin=target/release/jizhi-tune

# One trial's final val top-1 (0 when it diverged): EPOCHS, its share of WARMUP, LR, SEED.
top1() {
    "$bin" trial --model alexnet-bn-proxy --batch 3072 --epochs "$1" --precision fp16 \
        --optimizer lars --lars-eta 0.01 --momentum 0.9 --weight-decay 0.0005 --lr "$3" \
        --warmup-epochs "$2" --poly-power 2 --loss-scale dynamic --threads 1 --seed "$4" \
        2>/dev/null | python3 -c '
import json, sys
final = [json.loads(l) for l in sys.stdin if l.startswith("{")][-1]
v = final.get("final_val_top1")
print(v if isinstance(v, (int, float)) else 0.0)'
}

short_warmup=$(python3 -c "print($WARMUP / 2)")
for seed in $SEEDS; do
    rows=()
    for lr in $RATES; do
        echo "seed $seed, peak LR $lr: 20 and 40 steps..." >&2
        # the two fidelities side by side, one core each
        top1 1 "$short_warmup" "$lr" "$seed" >"${TMPDIR:-/tmp}/fid.short.$$" &
        full=$(top1 2 "$WARMUP" "$lr" "$seed")
        wait
        rows+=("$lr $(cat "${TMPDIR:-/tmp}/fid.short.$$") $full")
    done
    rm -f "${TMPDIR:-/tmp}/fid.short.$$"
    printf '%s\n' "${rows[@]}" | python3 -c '
import sys
seed = sys.argv[1]
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r
def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")
print(f"seed {seed}: peak LR, val top-1 after 20 steps (1 epoch), after 40 steps (2 epochs)")
for lr, s, f in rows:
    print(f"  {lr:>6g}  {100 * s:6.2f} %  {100 * f:6.2f} %")
best_short = max(rows, key=lambda r: r[1])
best_full = max(rows, key=lambda r: r[2])
rho = spearman([r[1] for r in rows], [r[2] for r in rows])
rho_text = "undefined (a column is constant)" if rho != rho else f"{rho:.2f}"
print(f"  best LR: {best_short[0]:g} at 20 steps, {best_full[0]:g} at 40; Spearman rho {rho_text}")
' "$seed"
done
