# Sourced by the Optuna comparison scripts: makes sure $VENV (default target/optuna-venv) holds
# Optuna, creating the virtual environment once, and builds the jizhi-tune binary ($BIN).
VENV=${VENV:-target/optuna-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || {
        echo "python3 -m venv failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2
        exit 1
    }
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check optuna
cargo build --release -p jizhi-tune
BIN=target/release/jizhi-tune
