# Sourced by the scripts: make .venv with the package installed (once), quietly.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Some machines' pip configuration names local index folders that do not exist; pip then warns
# once per package. Drop exactly that line; every other message (and pip's exit status) stays.
quiet_pip() { grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" || true; }
ensure_venv() {
  local extras="${1:-}"
  local stamp="$VENV/.installed${extras:+-$extras}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | quiet_pip >&2
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "Installing cpq2stripe${extras:+ [$extras]} into $VENV ..." >&2
    # PYTHONWARNINGS reaches the build backend, whose editable-install warning is noise here.
    PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install --quiet -e "$ROOT${extras:+[$extras]}" 2>&1 | quiet_pip >&2
    touch "$stamp"
  fi
}
