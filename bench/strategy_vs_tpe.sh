#!/usr/bin/env bash
# The coarse-to-fine strategy against Optuna's TPE and random search on the synthetic suite
# (Branin, Hartmann-6, a noisy log-LR x warmup landscape): median regret over SEEDS seeds at equal
# trial budgets (random search gets twice the budget). TPE runs in a virtual environment under
# target/ and evaluates every trial through `jizhi-tune bench strategy --evaluate`, so both see the
# same objective and noise; `jizhi-tune bench strategy --tpe` then prints the table side by side.
#
# Usage: bench/strategy_vs_tpe.sh     (SEEDS, VENV and WORK may be set in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-20}
VENV=${VENV:-target/optuna-venv}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/strategy-vs-tpe.XXXXXX")}
mkdir -p "$WORK"
echo "working in $WORK"

source bench/optuna_venv.sh

echo "== TPE ($SEEDS seeds per problem)"
"$VENV/bin/python" bench/tpe_synthetic.py "$BIN" "$SEEDS" "$WORK/tpe.json"
echo "== coarse-to-fine, random search and TPE"
"$BIN" bench strategy --seeds "$SEEDS" --tpe "$WORK/tpe.json" | tee "$WORK/table.txt"
