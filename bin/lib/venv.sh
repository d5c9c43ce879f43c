# Sourced by every bin/ command: make sure .venv/ exists, matches the project's
# declared dependencies and the running python3, then export FABRIC_PY.
# A stamp (hash of setup.cfg, pyproject.toml and the interpreter version) says
# when the venv is stale; a lock keeps concurrent first runs from racing.

fabric_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fabric_venv="$fabric_root/.venv"

fabric_ensure_venv() {
    local py want have
    py="${FABRIC_PYTHON:-python3}"
    if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
        echo "fabric: needs Python 3.11 or newer as '$py' (found: $("$py" --version 2>&1 || echo none))" >&2
        exit 2
    fi
    want="$(cat "$fabric_root/setup.cfg" "$fabric_root/pyproject.toml" | sha256sum | cut -d' ' -f1)-$("$py" -c 'import sys; print(sys.version.split()[0])')"
    have="$(cat "$fabric_venv/.fabric-stamp" 2>/dev/null || true)"
    if [ -x "$fabric_venv/bin/python" ] && [ "$want" = "$have" ]; then
        return 0
    fi
    mkdir -p "$fabric_venv"
    (
        flock 9
        have="$(cat "$fabric_venv/.fabric-stamp" 2>/dev/null || true)"
        if [ -x "$fabric_venv/bin/python" ] && [ "$want" = "$have" ]; then
            exit 0
        fi
        echo "fabric: preparing $fabric_venv (first run or dependencies changed)" >&2
        if [ ! -x "$fabric_venv/bin/python" ] || \
           [ "$("$fabric_venv/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "$("$py" -c 'import sys; print(sys.version.split()[0])')" ]; then
            "$py" -m venv --clear "$fabric_venv" >&2
        fi
        "$fabric_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -e "$fabric_root[test]" >&2
        echo "$want" > "$fabric_venv/.fabric-stamp"
    ) 9>"$fabric_root/.venv.lock"
}

fabric_ensure_venv
FABRIC_PY="$fabric_venv/bin/python"
export FABRIC_PY
