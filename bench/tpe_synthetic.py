"""Optuna's TPE on the synthetic problems of `jizhi-tune bench strategy`, at the same trial budgets.

Every trial is evaluated by `jizhi-tune bench strategy --evaluate`, so TPE sees exactly the
objective and noise the coarse-to-fine strategy sees. Writes {"problem": [regret per seed]}: the
noiseless regret of the best observed trial of each seed.

Usage: python bench/tpe_synthetic.py BIN SEEDS OUT.json
"""
import json
import subprocess
import sys

import optuna


def main():
    binary, seeds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problems = json.loads(subprocess.check_output([binary, "bench", "strategy", "--problems"]))
    result = {}
    for problem in problems:
        regrets = []
        for seed in range(seeds):
            sampler = optuna.samplers.TPESampler(seed=seed)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            best = None
            for trial_id in range(1, problem["trials"] + 1):
                trial = study.ask()
                x = [trial.suggest_float(p["name"], p["min"], p["max"], log=p["log"]) for p in problem["params"]]
                line = subprocess.check_output([
                    binary, "bench", "strategy", "--evaluate", problem["name"],
                    "--at=" + ",".join(repr(v) for v in x), "--seed", str(seed), "--trial", str(trial_id),
                ])
                value = json.loads(line)
                study.tell(trial, value["observed"])
                if best is None or value["observed"] > best["observed"]:
                    best = value
            regrets.append(best["regret"])
            print(f"tpe {problem['name']} seed {seed}: regret {best['regret']:.4f}", file=sys.stderr)
        result[problem["name"]] = regrets
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
