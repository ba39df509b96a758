#!/usr/bin/env bash
# A trial launcher for the benchmarks: appends the trial's command line (shell-quoted) to the file
# named by its first argument, then runs the command. Used as
#   jizhi-tune SPACE --launcher "bench/record_command.sh LOG"
# so a benchmark knows exactly which trials a search ran and with which settings.
set -euo pipefail
log=$1
shift
printf '%q ' "$@" >>"$log"
printf '\n' >>"$log"
exec "$@"
