# Shared by scripts/demo, scripts/test and scripts/bench: make .venv and install zstore.
# Usage: EXTRA=test source scripts/_venv.sh   (EXTRA: an optional extra of pyproject.toml)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRA="${EXTRA:-}"
PYTHON="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Reinstall when pyproject.toml changed since the last install into this venv.
SPEC="."
[[ -n "$EXTRA" ]] && SPEC=".[$EXTRA]"
STAMP="$VENV/.zstore-installed-$(echo "$SPEC" | tr -c 'a-z' '_')"
if [[ ! -f "$STAMP" || "$ROOT/pyproject.toml" -nt "$STAMP" ]]; then
  echo "==> installing zstore$([[ -n "$EXTRA" ]] && echo " with the $EXTRA extra") into $VENV"
  # pip's build backend prints notices (BuildBackendWarning: Editable installation)
  # even with --quiet: show its output only when the install fails.
  if ! PIP_LOG=$(cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet -e "$SPEC" 2>&1); then
    echo "$PIP_LOG" >&2
    exit 1
  fi
  touch "$STAMP"
fi
PY="$VENV/bin/python"
