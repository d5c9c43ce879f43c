# Sourced by `fabric test`: the Debian packages the tests drive for real.
#   chromium    the operator console's browser tests (Playwright never downloads a browser)
#   prometheus  promtool, which checks and unit-tests deploy/alerts.yaml
# As root, missing ones are installed with apt-get; otherwise one line says what to install.

fabric_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fabric: installing ${missing[*]} (Debian packages the tests need)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
        return 0
    fi
    echo "fabric: the tests need these Debian packages: sudo apt-get install ${missing[*]}" >&2
    exit 2
}
