#!/usr/bin/env bash
# Checks the NCCL collectives on this machine's GPUs in one run (about a minute after the build):
# probe, all-reduce of f32/f16/bf16 against a host sum over all local GPUs, and communicator
# splits into groups of every size that divides the GPU count. The last stdout line is one JSON
# object; the exit status is non-zero, with the reason on stderr, when there is no usable GPU or
# a check fails.
#
# Usage: bench/gpu_check.sh [gpu-check options, e.g. --gpus 1 --elements 16777217]
# Env:   JIZHI_BIN=path/to/jizhi-tune to skip the build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CUDA libraries are loaded at run time under their unversioned names (libnccl.so). Python
# wheels and some packages ship only libnccl.so.2: give it the plain name in a private folder.
find_nccl() {
    local dirs=()
    if command -v ldconfig >/dev/null; then
        while read -r path; do dirs+=("$(dirname "$path")"); done \
            < <(ldconfig -p 2>/dev/null | awk '/libnccl\.so/ {print $NF}')
    fi
    if command -v python3 >/dev/null; then
        local wheel
        wheel=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
        [ -n "$wheel" ] && dirs+=("$wheel")
    fi
    dirs+=(/usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/local/lib)
    IFS=: read -r -a env_dirs <<< "${LD_LIBRARY_PATH:-}"
    for d in "${env_dirs[@]}" "${dirs[@]}"; do
        [ -n "$d" ] || continue
        if [ -e "$d/libnccl.so" ]; then return 0; fi
        if [ -e "$d/libnccl.so.2" ]; then
            local shim
            shim=$(mktemp -d)
            ln -s "$d/libnccl.so.2" "$shim/libnccl.so"
            export LD_LIBRARY_PATH="$shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            echo "gpu_check.sh: using $d/libnccl.so.2" >&2
            return 0
        fi
    done
    echo "gpu_check.sh: no libnccl.so found (the check will report it)" >&2
}
find_nccl

if [ -z "${JIZHI_BIN:-}" ]; then
    if [ -x target/release/jizhi-tune ] && ! command -v cargo >/dev/null; then
        JIZHI_BIN=target/release/jizhi-tune
    else
        cargo build --release -q -p jizhi-tune
        JIZHI_BIN=target/release/jizhi-tune
    fi
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
exec timeout 300 "$JIZHI_BIN" gpu-check "$@"
