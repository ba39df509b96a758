#!/usr/bin/env python3
"""Optuna's storages measured the way `jizhi-tune bench store` measures the jizhi-tune store.

For Optuna's SQLite storage (RDBStorage) and its file journal (JournalStorage with
JournalFileBackend), in the same run:

- record one epoch: `trial.report(value, step)` on a running trial, timed call by call (each one
  is a committed, fsync'd write in both storages, as each epoch record is in ours); 0 skips it;
- open and resume: `optuna.load_study` + `study.get_trials()` + counting finished trials, on a
  study of TRIALS trials x EPOCHS intermediate values (1 in 100 trials left running), from a
  fresh storage object each time, median of RESUMES; 0 trials skips it;
- size on disk of that study (allocated blocks, as `du` counts them).

Optuna records one number per step; a jizhi-tune epoch record holds eight (step, train loss,
val top-1, images/s, loss scale, skipped steps, wall time and the epoch number).
The last output line is one JSON object of the figures.
"""

import argparse
import json
import os
import sys
import time

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

DISTRIBUTIONS = {
    "peak_lr": FloatDistribution(0.5, 8.0, log=True),
    "warmup_epochs": FloatDistribution(0.0, 1.0),
    "loss_scale": CategoricalDistribution(["dynamic", "1", "1024", "65536"]),
    "fusion_threshold_mib": FloatDistribution(1.0, 64.0, log=True),
    "lars_eta": FloatDistribution(0.001, 0.1, log=True),
    "momentum": FloatDistribution(0.8, 0.99),
    "weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
}


def fraction(a, b):
    """A deterministic pseudo-random number in [0, 1), for full-precision values."""
    mask = (1 << 64) - 1
    x = ((a * 0x9E3779B97F4A7C15) ^ (b * 0xC2B2AE3D27D4EB4F)) & mask
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 32
    return (x >> 11) / float(1 << 53)


def params(i):
    return {
        "peak_lr": 0.5 * (1.0 + 15.0 * fraction(i, 1)),
        "warmup_epochs": 0.5,
        "loss_scale": "dynamic",
        "fusion_threshold_mib": 64.0,
        "lars_eta": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0005,
    }


def storage(kind, path):
    if kind == "sqlite":
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))


def quantile(values, q):
    """Nearest-rank quantile of sorted values (as the Rust benchmark computes it)."""
    if not values:
        return float("nan")
    rank = int(-(-q * len(values) // 1))
    return values[min(max(rank, 1), len(values)) - 1]


def disk_usage(paths):
    total = 0
    for p in paths:
        if os.path.exists(p):
            total += os.stat(p).st_blocks * 512
    return total


def record(kind, path, n):
    study = optuna.create_study(study_name="record", storage=storage(kind, path))
    trial = study.ask()
    samples = []
    for i in range(n):
        value = fraction(1, i)
        start = time.perf_counter()
        trial.report(value, i + 1)
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return samples


def build(kind, path, trials, epochs):
    start = time.perf_counter()
    study = optuna.create_study(study_name="big", storage=storage(kind, path))
    batch = []
    step = max(trials // 10, 1)
    for i in range(1, trials + 1):
        running = i % 100 == 0
        batch.append(
            create_trial(
                state=TrialState.RUNNING if running else TrialState.COMPLETE,
                value=None if running else 0.5 + 0.3 * fraction(i, 2),
                params=params(i),
                distributions=DISTRIBUTIONS,
                intermediate_values={e: 0.8 * fraction(i, 4 * e + 1) for e in range(1, epochs + 1)},
            )
        )
        if len(batch) == 100 or i == trials:
            study.add_trials(batch)
            batch = []
        if i % step == 0:
            print(f"  {kind}: {i}/{trials} trials ({time.perf_counter() - start:.1f} s)", flush=True)
    return time.perf_counter() - start


def resume(kind, path):
    start = time.perf_counter()
    study = optuna.load_study(study_name="big", storage=storage(kind, path))
    trials = study.get_trials(deepcopy=False)
    kept = sum(1 for t in trials if t.state.is_finished())
    return time.perf_counter() - start, kept, len(trials) - kept


def measure(kind, work, args):
    files = {
        "sqlite": (os.path.join(work, f"{kind}-record.db"), os.path.join(work, f"{kind}-big.db")),
        "journal": (os.path.join(work, f"{kind}-record.log"), os.path.join(work, f"{kind}-big.log")),
    }[kind]
    figures = {"records_timed": args.records}
    if args.records > 0:
        print(f"{kind}: recording {args.records} epochs one at a time ...", flush=True)
        rec = record(kind, files[0], args.records)
        if args.save_samples:
            with open(args.save_samples, "w") as f:
                f.write("".join(f"{us}\n" for us in rec))
        figures.update(
            record_epoch_us_median=quantile(rec, 0.5),
            record_epoch_us_p99=quantile(rec, 0.99),
            record_epoch_us_mean=sum(rec) / len(rec),
        )
        print(f"{kind}: record one epoch median {figures['record_epoch_us_median']:.0f} us, "
              f"p99 {figures['record_epoch_us_p99']:.0f} us", flush=True)
    if args.trials > 0:
        print(f"{kind}: building a study of {args.trials} trials x {args.epochs} epochs ...", flush=True)
        build_secs = build(kind, files[1], args.trials, args.epochs)
        extras = [files[1] + suffix for suffix in ("", "-journal", "-wal", "-shm", ".lock")]
        resumes = []
        for i in range(max(args.resumes, 1)):
            secs, kept, requeued = resume(kind, files[1])
            resumes.append(secs)
            if i == 0:
                print(f"{kind}: resume sees {kept} finished trials and {requeued} to run again", flush=True)
        resumes.sort()
        figures.update(
            build_secs=build_secs,
            resume_secs=quantile(resumes, 0.5),
            resume_secs_max=resumes[-1],
            bytes_on_disk=disk_usage(extras),
        )
        print(f"{kind}: resume median {figures['resume_secs']:.3f} s; "
              f"{figures['bytes_on_disk'] / 2**20:.1f} MiB on disk", flush=True)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--resumes", type=int, default=5)
    parser.add_argument("--dir", required=True, help="folder to work in (on the disk to measure)")
    parser.add_argument("--storages", default="sqlite,journal")
    parser.add_argument("--save-samples", help="write every timed record (us) to this file, one per line")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(args.dir, exist_ok=True)
    out = {"optuna_version": optuna.__version__, "trials": args.trials, "epochs_per_trial": args.epochs}
    for kind in args.storages.split(","):
        out[kind] = measure(kind, args.dir, args)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
