"""The search strategy on the real proxy trainer: coarse-to-fine against Optuna's TPE and random search.

Reads what one coarse-to-fine study ran (the trial commands its launcher recorded and its export),
gives TPE the same total epoch budget and random search twice that budget, all driving
`jizhi-tune trial` with the study's own trial command; then evaluates the configuration each
method picked on the same held-out seeds at full fidelity, so the comparison is of what each
method found, not of how lucky its best trial was. With a ladder study as well, it measures how
many 64K trials the seeded rung needs to reach the cold start's best.

Usage:
  python bench/proxy_search_bench.py run BIN SEED C2F_COMMANDS C2F_EXPORT [LADDER_EXPORT] OUT.json
  python bench/proxy_search_bench.py ladder OUT.json C2F_EXPORT LADDER_EXPORT   (adds the ladder figure)
  python bench/proxy_search_bench.py table OUT.json...
"""
import json
import math
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import optuna

# Bounds of the searched parameters, as in search-spaces/proxy64k-bench.toml.
LR = (0.0625, 8.0)
WARMUP = (0.0, 1.0)
# Held-out seeds (offsets from the study seed) every method's pick is evaluated on.
EVAL_OFFSETS = (101, 102, 103)
# Trials run side by side, one thread each (as the study runs them on 2 cores).
PARALLEL = 2


def read_commands(path):
    """The trial commands a study ran, as argument lists starting at the binary, one per trial.

    A trial interrupted and resumed is logged once per start; its checkpoint names the trial,
    so each is counted once (the resumed run continues the interrupted one)."""
    by_trial = {}
    with open(path) as f:
        for line in f:
            words = shlex.split(line)
            if "trial" in words:
                words = words[words.index("trial") - 1:]
                key = option(words, "--checkpoint") if "--checkpoint" in words else len(by_trial)
                by_trial[key] = words
    return list(by_trial.values())


def option(words, name):
    return words[words.index(name) + 1]


def epochs_of(words):
    """Epoch-equivalents of one trial: epochs times the fraction of the data."""
    return float(option(words, "--epochs")) * float(option(words, "--data-fraction"))


def with_options(words, **values):
    """`words` with these options set (underscores in names become dashes), checkpoint dropped."""
    words = list(words)
    if "--checkpoint" in words:
        i = words.index("--checkpoint")
        del words[i:i + 2]
    for key, value in values.items():
        name = "--" + key.replace("_", "-")
        if name in words:
            words[words.index(name) + 1] = str(value)
        else:
            words += [name, str(value)]
    return words


def run_trial(words):
    """Runs one trial; its final validation top-1 (0 when it diverged or failed)."""
    done = subprocess.run(words, capture_output=True, text=True)
    final = None
    for line in done.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "final":
            final = record
    if final is None:
        print(f"trial failed: {' '.join(words)}\n{done.stderr[-2000:]}", file=sys.stderr)
        return 0.0
    value = final.get("final_val_top1")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def optuna_search(template, sampler, trials, seed, label):
    """Drives `trials` full-fidelity trials with an Optuna sampler, PARALLEL at a time."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    history = []
    with ThreadPoolExecutor(PARALLEL) as pool:
        pending = trials
        while pending > 0:
            batch = [study.ask() for _ in range(min(PARALLEL, pending))]
            pending -= len(batch)
            points = [(t.suggest_float("peak_lr", *LR, log=True),
                       t.suggest_float("warmup_epochs", *WARMUP)) for t in batch]
            commands = [with_options(template, lr=lr, warmup_epochs=w, seed=seed) for lr, w in points]
            for trial, point, top1 in zip(batch, points, pool.map(run_trial, commands)):
                study.tell(trial, top1)
                history.append({"peak_lr": point[0], "warmup_epochs": point[1], "top1": top1})
                print(f"{label} trial {len(history)}/{trials}: lr {point[0]:.3f} warmup {point[1]:.2f} "
                      f"-> {100 * top1:.2f}%", file=sys.stderr)
    best = max(history, key=lambda h: h["top1"])
    return {"trials": trials, "epochs": trials * epochs_of(template), "history": history,
            "pick": {"peak_lr": best["peak_lr"], "warmup_epochs": best["warmup_epochs"]},
            "search_best_top1": best["top1"]}


def c2f_result(commands, export):
    """What the coarse-to-fine study spent and picked: the confirmed configuration with the best
    mean over its full-fidelity runs (its confirm seeds and any search-stage run at the same
    number of steps), as the study's own confirm verdict ranks them."""
    trials = json.load(open(export))

    def steps(t):
        return t["epochs"][-1]["step"] if t.get("epochs") else None

    def config(t):
        return (t["batch"], tuple(sorted((k, v) for k, v in t["params"].items() if k != "seed")))

    done = [t for t in trials if t.get("final_val_top1") is not None]
    confirmed = [t for t in done if t["stage"] == "confirm"]
    full_steps = {steps(t) for t in confirmed}
    runs = {}
    for t in confirmed:
        runs.setdefault(config(t), []).append(t)
    for t in done:
        if t["stage"] != "confirm" and steps(t) in full_steps and config(t) in runs:
            runs[config(t)].append(t)
    best = max(runs.values(),
               key=lambda ts: (statistics.mean(t["final_val_top1"] for t in ts), -ts[0]["id"]))
    pick = {k: best[0]["params"][k] for k in ("peak_lr", "warmup_epochs")}
    return {"trials": len(trials), "epochs": sum(epochs_of(w) for w in commands), "pick": pick,
            "search_best_top1": statistics.mean(t["final_val_top1"] for t in best),
            "pick_runs": len(best)}


def evaluate(template, pick, seed):
    commands = [with_options(template, lr=pick["peak_lr"], warmup_epochs=pick["warmup_epochs"],
                             seed=seed + off) for off in EVAL_OFFSETS]
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(run_trial, commands))


def ladder_figure(cold_export, ladder_export, batch=65536):
    """Trials of the seeded 64K rung needed to reach the cold start's best search-stage top-1.

    Both studies run their coarse and refine trials at the same fidelity, so accuracies compare
    directly; trials are taken in id order (the order the strategy proposed them)."""
    def search_trials(path):
        ts = [t for t in json.load(open(path)) if t["batch"] == batch and t["stage"] != "confirm"]
        return sorted(ts, key=lambda t: t["id"])
    cold = search_trials(cold_export)
    seeded = search_trials(ladder_export)
    cold_best = max(t["final_val_top1"] or 0.0 for t in cold)
    needed = None
    running = 0.0
    for n, t in enumerate(seeded, 1):
        running = max(running, t["final_val_top1"] or 0.0)
        if running >= cold_best and needed is None:
            needed = n
    return {"cold_trials": len(cold), "cold_best_top1": cold_best, "seeded_trials": len(seeded),
            "seeded_best_top1": running, "needed": needed,
            "fraction": None if needed is None else needed / len(cold)}


def baselines(template, budget, seed, cache):
    """TPE with the budget and random search with twice it (kept in `cache`: they depend only on
    the trial command, the budget and the seed, not on the coarse-to-fine strategy)."""
    key = {"template": template[1:], "budget": budget, "seed": seed}
    try:
        cached = json.load(open(cache))
        if cached["key"] == key:
            return cached["tpe"], cached["random-2x"]
    except (OSError, ValueError, KeyError):
        pass
    tpe_trials = math.ceil(budget / epochs_of(template))
    # TPE's default 10 random start-up trials would leave it no model-guided trial at this budget.
    startup = max(2, tpe_trials // 2)
    tpe = optuna_search(template, optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
                        tpe_trials, seed, "tpe")
    tpe["startup_trials"] = startup
    rnd = optuna_search(template, optuna.samplers.RandomSampler(seed=seed), 2 * tpe_trials, seed,
                        "random")
    for method in (tpe, rnd):
        method["eval_top1"] = evaluate(template, method["pick"], seed)
    with open(cache, "w") as f:
        json.dump({"key": key, "tpe": tpe, "random-2x": rnd}, f, indent=1)
    return tpe, rnd


def run(binary, seed, commands_path, export, ladder_export, out):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    commands = read_commands(commands_path)
    # The full-fidelity trial command (the confirm stage's: most epochs, all of the data).
    full = [w for w in commands if float(option(w, "--data-fraction")) == 1.0]
    template = max(full, key=lambda w: float(option(w, "--epochs")))
    template[0] = binary
    c2f = c2f_result(commands, export)
    budget = c2f["epochs"]
    tpe, rnd = baselines(template, budget, seed, out + ".baselines")
    c2f["eval_top1"] = evaluate(template, c2f["pick"], seed)
    result = {"seed": seed, "budget_epochs": budget, "methods": {"coarse-to-fine": c2f, "tpe": tpe,
                                                                 "random-2x": rnd}}
    for name, method in result["methods"].items():
        print(f"{name}: pick {method['pick']} -> held-out {method['eval_top1']}", file=sys.stderr)
    if ladder_export:
        result["ladder"] = ladder_figure(export, ladder_export)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(paths):
    results = [json.load(open(p)) for p in paths]
    names = ["coarse-to-fine", "tpe", "random-2x"]
    print("| seed | budget (epochs) | method | trials | epochs | pick (lr, warmup) | best in search | "
          "held-out top-1 (mean ± sd of 3 seeds) |")
    print("|---|---|---|---|---|---|---|---|")
    means = {n: [] for n in names}
    for r in results:
        for n in names:
            m = r["methods"][n]
            mu, sd = mean_std(m["eval_top1"])
            means[n].append(mu)
            print(f"| {r['seed']} | {r['budget_epochs']:.1f} | {n} | {m['trials']} | {m['epochs']:.1f} | "
                  f"{m['pick']['peak_lr']:.3f}, {m['pick']['warmup_epochs']:.2f} | "
                  f"{100 * m['search_best_top1']:.2f} % | {100 * mu:.2f} ± {100 * sd:.2f} % |")
    summary = {n: statistics.median(v) for n, v in means.items()}
    print()
    for n in names:
        print(f"median over seeds of held-out mean top-1, {n}: {100 * summary[n]:.2f} %")
    ladders = [r["ladder"] for r in results if "ladder" in r]
    for r, lad in zip([r for r in results if "ladder" in r], ladders):
        frac = "never" if lad["fraction"] is None else f"{100 * lad['fraction']:.0f} %"
        print(f"ladder seed {r['seed']}: cold 64K best {100 * lad['cold_best_top1']:.2f} % in "
              f"{lad['cold_trials']} trials; seeded 64K reached it after {lad['needed']} of "
              f"{lad['seeded_trials']} trials ({frac} of the cold start's trials); seeded best "
              f"{100 * lad['seeded_best_top1']:.2f} %")
    fractions = [lad["fraction"] if lad["fraction"] is not None else math.inf for lad in ladders]
    print(json.dumps({"held_out_median_top1": summary,
                      "ladder_median_fraction": statistics.median(fractions) if fractions else None}))


if __name__ == "__main__":
    if sys.argv[1] == "run":
        args = sys.argv[2:]
        if len(args) == 5:
            args.insert(4, None)
        binary, seed, commands, export, ladder, out = args
        run(binary, int(seed), commands, export, ladder, out)
    elif sys.argv[1] == "ladder":
        out, cold_export, ladder_export = sys.argv[2:]
        result = json.load(open(out))
        result["ladder"] = ladder_figure(cold_export, ladder_export)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    elif sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        sys.exit(__doc__)
