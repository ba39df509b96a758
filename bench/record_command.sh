#!/usr/bin/env bash
# A trial launcher for the benchmarks: appends the trial's command line (shell-quoted) to the file
# named by its first argument, then runs the command. Used as
#   jizhi-tune SPACE --launcher "bench/record_command.sh LOG"
# so a benchmark knows exactly which trials a search ran and with which settings.
set -euo pipefail
log=$1
shift
line=$(printf '%q ' "$@")
# One locked write per line: trials start side by side, and unlocked appends of the words and the
# newline could interleave two commands on one line (the benchmark would then miss a trial).
(
    flock 9
    printf '%s\n' "$line" >&9
) 9>>"$log"
exec "$@"
