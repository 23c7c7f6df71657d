#!/usr/bin/env bash
# Installs the few Debian packages gatelane needs outside Python, when they are missing.
# Runs on every `make` target that needs them; it is a no-op (a few ms) once they are there.
set -euo pipefail

missing=()
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' || missing+=(libzbar0)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
# The simulated plate camera draws Chinese plate lettering with this font.
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing+=(fonts-wqy-zenhei)
# The tests: the lane page in a real browser, and the package installed into a clean Debian root.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The backend's PostgreSQL store: the tests start a private server with these binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "gatelane needs Debian packages: run 'sudo apt-get install -y ${missing[*]}' and try again." >&2
    exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package may start a system broker on 1883; the project always runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
# Nor does it use the system's PostgreSQL cluster: each run starts its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
