#!/usr/bin/env bash
# The jizhi-tune store against Optuna's SQLite storage (RDBStorage) and file journal storage
# (JournalStorage), measured in the same run on the same disk: time to record one trial epoch
# (median, p99), time to open and resume a study of TRIALS x EPOCHS, size on disk. Prints each
# figure and the ratio Optuna / jizhi-tune (above 1: the jizhi-tune store is faster or smaller).
#
# fsync latency on a shared machine drifts over minutes, so the epoch records are timed in ROUNDS
# rounds that take turns (jizhi-tune, Optuna journal, Optuna SQLite, again ...) and the samples of
# all rounds are pooled. Optuna's SQLite storage takes minutes to build and seconds to reopen a
# study of 1,000 trials x 100 epochs on 2 cores, so its study has SQLITE_TRIALS (default 1,000)
# trials and is compared with a jizhi-tune study of the same size; the journal storage runs at the
# full TRIALS.
#
# Usage: bench/store_vs_optuna.sh     (TRIALS, EPOCHS, SQLITE_TRIALS, RECORDS, ROUNDS, RESUMES, WORK
#                                      and VENV may be set in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

TRIALS=${TRIALS:-10000}
EPOCHS=${EPOCHS:-100}
SQLITE_TRIALS=${SQLITE_TRIALS:-1000}
RECORDS=${RECORDS:-1000}
ROUNDS=${ROUNDS:-3}
RESUMES=${RESUMES:-5}
VENV=${VENV:-target/optuna-venv}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/store-vs-optuna.XXXXXX")}
mkdir -p "$WORK"
echo "working in $WORK"

source bench/optuna_venv.sh
PY="$VENV/bin/python bench/optuna_store.py"

run() { # name, command...: runs it, keeping its output, and saves its last line (the JSON figures)
    local name=$1
    shift
    echo "== $name"
    "$@" | tee "$WORK/$name.txt"
    tail -n 1 "$WORK/$name.txt" >"$WORK/$name.json"
}

for round in $(seq 1 "$ROUNDS"); do
    run "record-jizhi-$round" $BIN bench store --trials 0 --records "$RECORDS" --dir "$WORK" \
        --save-samples "$WORK/samples-jizhi-$round.txt"
    run "record-journal-$round" $PY --storages journal --trials 0 --records "$RECORDS" --dir "$WORK/o-$round" \
        --save-samples "$WORK/samples-journal-$round.txt"
    run "record-sqlite-$round" $PY --storages sqlite --trials 0 --records "$RECORDS" --dir "$WORK/o-$round" \
        --save-samples "$WORK/samples-sqlite-$round.txt"
done
run study-jizhi $BIN bench store --trials "$TRIALS" --epochs "$EPOCHS" --records 0 --resumes "$RESUMES" --dir "$WORK"
run study-journal $PY --storages journal --trials "$TRIALS" --epochs "$EPOCHS" --records 0 --resumes "$RESUMES" \
    --dir "$WORK/o-study"
run study-jizhi-small $BIN bench store --trials "$SQLITE_TRIALS" --epochs "$EPOCHS" --records 0 --resumes "$RESUMES" \
    --dir "$WORK"
run study-sqlite $PY --storages sqlite --trials "$SQLITE_TRIALS" --epochs "$EPOCHS" --records 0 --resumes "$RESUMES" \
    --dir "$WORK/o-study"

echo "== ratios (Optuna / jizhi-tune; above 1 means the jizhi-tune store is faster or smaller)"
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, math, os, sys

work, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(os.path.join(work, name + ".json")))


def samples(who):
    values = []
    for r in range(1, rounds + 1):
        with open(os.path.join(work, f"samples-{who}-{r}.txt")) as f:
            values += [float(line) for line in f if line.strip()]
    return sorted(values)


def quantile(v, q):  # nearest rank, as both benchmarks compute it
    rank = math.ceil(q * len(v) - 1e-9)
    return v[min(max(rank, 1), len(v)) - 1]


record = {who: samples(who) for who in ("jizhi", "journal", "sqlite")}
study = {"jizhi": load("study-jizhi"), "jizhi-small": load("study-jizhi-small"),
         "journal": load("study-journal")["journal"], "sqlite": load("study-sqlite")["sqlite"]}
print(f"optuna {load('study-journal')['optuna_version']}; an Optuna step holds 1 number, a jizhi-tune epoch record 8")
rows = []
for who in ("journal", "sqlite"):
    for q, key in ((0.5, "record_epoch_us_median"), (0.99, "record_epoch_us_p99")):
        ours, theirs = quantile(record["jizhi"], q), quantile(record[who], q)
        rows.append((who, key, f"{len(record['jizhi'])} vs {len(record[who])} records", ours, theirs, "us"))
    ref = study["jizhi"] if who == "journal" else study["jizhi-small"]
    size = f"{ref['trials']} trials x {ref['epochs_per_trial']} epochs"
    rows.append((who, "resume_secs", size, ref["resume_secs"], study[who]["resume_secs"], "s"))
    rows.append((who, "bytes_on_disk", size, ref["bytes_on_disk"] / 2**20, study[who]["bytes_on_disk"] / 2**20, "MiB"))
ratios = {}
for who, key, what, ours, theirs, unit in rows:
    ratio = theirs / ours if ours else float("inf")
    ratios[f"{key}_optuna_{who}_over_jizhi"] = ratio
    print(f"Optuna {who:<8} {key:<23} ({what:<28}) jizhi-tune {ours:>10.3f} {unit:<3} optuna {theirs:>10.3f} {unit:<3} ratio {ratio:7.2f}")
print(json.dumps(ratios))
PY
