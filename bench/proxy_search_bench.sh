#!/usr/bin/env bash
# The search strategy on the real proxy trainer at the 64K-equivalent batch (3072 on the embedded
# data): per seed, one coarse-to-fine study (search-spaces/proxy64k-bench.toml), Optuna's TPE with
# the same total epoch budget and random search with twice that, each driving `jizhi-tune trial`;
# every method's pick is then evaluated on the same three held-out seeds. Also runs the 48K -> 64K
# ladder (search-spaces/proxy-ladder-bench.toml) and counts the 64K trials the seeded rung needs
# to reach the cold start's best. Prints one table; the last line is one JSON object.
#
# Usage: bench/proxy_search_bench.sh    (SEEDS="2018 2019", LADDER_SEEDS (default: SEEDS), VENV
# and WORK may be set). About 55 minutes per seed on 2 cores, 13 of them the ladder; a seed
# whose results are in WORK is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-2018 2019}
LADDER_SEEDS=${LADDER_SEEDS:-$SEEDS}
VENV=${VENV:-target/optuna-venv}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/proxy-search-bench.XXXXXX")}
mkdir -p "$WORK"
echo "working in $WORK"

source bench/optuna_venv.sh
# Every trial of the benchmark runs the same build, even if the tree is rebuilt meanwhile.
if [ ! -x "$WORK/jizhi-tune" ]; then
    cp "$BIN" "$WORK/jizhi-tune"
fi
BIN="$WORK/jizhi-tune"

results=()
for seed in $SEEDS; do
    studies=(proxy64k-bench)
    if [[ " $LADDER_SEEDS " == *" $seed "* ]]; then
        studies+=(proxy-ladder-bench)
    fi
    for study in "${studies[@]}"; do
        store="$WORK/$study-$seed"
        if [ ! -f "$WORK/$study-$seed.json" ]; then
            echo "== $study, seed $seed"
            "$BIN" "search-spaces/$study.toml" --headless --store "$store" --seed "$seed" \
                --launcher "$PWD/bench/record_command.sh $WORK/$study-$seed.commands"
            "$BIN" export "$store" >"$WORK/$study-$seed.json"
        fi
    done
    out="$WORK/result-$seed.json"
    if [ ! -f "$out" ]; then
        echo "== TPE and random search, seed $seed"
        ladder=()
        if [ -f "$WORK/proxy-ladder-bench-$seed.json" ]; then
            ladder=("$WORK/proxy-ladder-bench-$seed.json")
        fi
        "$VENV/bin/python" bench/proxy_search_bench.py run "$BIN" "$seed" \
            "$WORK/proxy64k-bench-$seed.commands" "$WORK/proxy64k-bench-$seed.json" \
            "${ladder[@]}" "$out"
    fi
    if [ -f "$WORK/proxy-ladder-bench-$seed.json" ]; then
        # (again when the ladder ran after the rest: the figure needs only the two exports)
        "$VENV/bin/python" bench/proxy_search_bench.py ladder "$out" \
            "$WORK/proxy64k-bench-$seed.json" "$WORK/proxy-ladder-bench-$seed.json"
    fi
    results+=("$out")
done
"$VENV/bin/python" bench/proxy_search_bench.py table "${results[@]}" | tee "$WORK/table.txt"
