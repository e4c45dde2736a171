# Sourced by scripts/demo and scripts/test: creates ./.venv on first use and installs
# the project with the named extra; reinstalls when pyproject.toml changes.
# Needs only python3 (>= 3.10) with venv and pip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${WIDE_LOGGING_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
extra="$1"
stamp="$venv/.installed-$extra"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment in $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing wide-logging[$extra] into $venv (first run takes a minute)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -e ".[$extra]" >&2
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
