#!/usr/bin/env bash
# Builds dist/gatelane_VERSION_ARCH.deb: the gatelane wheel and every pinned runtime wheel for
# Debian 12's Python 3.11 on ARCH (amd64 or arm64), with the plate engine (headless OpenCV 4
# and hyperlpr2's models), the unit, udev rules, account and folders.
#
#   deb/build-deb.sh [--arch amd64|arm64] [--version X.Y.Z] [--out DIR]
#
# --arch defaults to this machine's; --version (digits and dots) overrides pyproject's, for a
# test that needs a newer package. Needs network access to the package index, dpkg-deb and a
# Python with pip (PYTHON, default .venv/bin/python, else python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/deb"
ARCH="$(dpkg --print-architecture)"
VERSION=""
OUT="$REPO/dist"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

die() {
    echo "build-deb: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="${2:?--arch needs a value: amd64 or arm64}"; shift 2 ;;
        --version) VERSION="${2:?--version needs a value like 0.2.0}"; shift 2 ;;
        --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
        -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done

case "$ARCH" in
    amd64 | x86_64) ARCH=amd64 MACHINE=x86_64 ;;
    arm64 | aarch64) ARCH=arm64 MACHINE=aarch64 ;;
    *) die "no wheels for architecture '$ARCH': use --arch amd64 or --arch arm64" ;;
esac

PROJECT_VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")"
VERSION="${VERSION:-$PROJECT_VERSION}"
# Digits and dots only: the Debian and the Python version then sort the same way.
[[ "$VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "version '$VERSION' must be digits and dots, like 0.2.0"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gatelane-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src"
ROOT="$WORK/root"
WHEELS="$ROOT/opt/gatelane/wheels/$VERSION"
mkdir -p "$SRC" "$WHEELS"

# The source without tests, caches or build leftovers: the Pi needs none of them.
(
    cd "$REPO"
    tar --exclude=__pycache__ --exclude=tests --exclude='*.egg-info' --exclude=build \
        -cf - pyproject.toml README.md edge_agent host_tools simulators firmware/*.py
) | tar -C "$SRC" -xf -
if [ "$VERSION" != "$PROJECT_VERSION" ]; then
    sed -i "s/^version = \"$PROJECT_VERSION\"$/version = \"$VERSION\"/" "$SRC/pyproject.toml"
    sed -i "s/^__version__ = \".*\"$/__version__ = \"$VERSION\"/" "$SRC/edge_agent/__init__.py"
fi

echo "build-deb: gatelane $VERSION for $ARCH"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WHEELS" "$SRC"
[ -f "$WHEELS/gatelane-$VERSION-py3-none-any.whl" ] || die "the gatelane wheel was not built"

# The runtime: [project].dependencies and the uvc extra (headless OpenCV 4, for the plate
# engine and USB cameras), pinned by constraints.txt, as binary wheels for CPython 3.11 on
# glibc 2.36 (Debian 12), whatever Python and machine build them.
"$PYTHON" -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["uvc"]))' \
    "$SRC/pyproject.toml" >"$WORK/requirements.txt"
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_${MACHINE}"); done
platforms+=(--platform "manylinux2014_${MACHINE}")
binary_for_target=(--disable-pip-version-check --dest "$WHEELS" --constraint "$REPO/constraints.txt"
    --only-binary=:all: --python-version 3.11 --implementation cp
    --abi cp311 --abi abi3 --abi none "${platforms[@]}")
"$PYTHON" -m pip download --quiet "${binary_for_target[@]}" --requirement "$WORK/requirements.txt"
# The plate models, without hyperlpr2's declared opencv-python (it would replace the headless
# build); the postinst installs it the same way.
"$PYTHON" -m pip download --quiet "${binary_for_target[@]}" --no-deps hyperlpr2
ls "$WHEELS"/opencv_python_headless-*.whl "$WHEELS"/hyperlpr2-*.whl >/dev/null 2>&1 ||
    die "the plate engine's wheels (opencv-python-headless, hyperlpr2) were not downloaded"

install -D -m 0644 "$REPO/edge_agent/deploy/gatelane-agent.service" \
    "$ROOT/lib/systemd/system/gatelane-agent.service"
install -D -m 0644 "$REPO/edge_agent/deploy/99-gatelane.rules" "$ROOT/lib/udev/rules.d/99-gatelane.rules"
install -D -m 0644 "$HERE/sysusers.conf" "$ROOT/usr/lib/sysusers.d/gatelane.conf"
install -D -m 0644 "$HERE/tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/gatelane.conf"
install -D -m 0644 "$REPO/edge_agent/deploy/agent.example.toml" "$ROOT/etc/gatelane/agent.example.toml"
install -D -m 0644 "$HERE/copyright" "$ROOT/usr/share/doc/gatelane/copyright"
mkdir -p "$ROOT/usr/bin"
ln -s /opt/gatelane/current/bin/edge-agent "$ROOT/usr/bin/edge-agent"
ln -s /opt/gatelane/current/bin/lanectl "$ROOT/usr/bin/lanectl"

mkdir -p "$ROOT/DEBIAN"
INSTALLED_SIZE="$(du -sk --apparent-size "$ROOT" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$INSTALLED_SIZE/" \
    "$HERE/debian/control" >"$ROOT/DEBIAN/control"
install -m 0644 "$HERE/debian/conffiles" "$ROOT/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    sed "s/@VERSION@/$VERSION/" "$HERE/debian/$script" >"$ROOT/DEBIAN/$script"
    chmod 0755 "$ROOT/DEBIAN/$script"
done

mkdir -p "$OUT"
DEB="$OUT/gatelane_${VERSION}_${ARCH}.deb"
# The wheels are compressed already: gzip is as small as xz here, and much faster.
dpkg-deb --root-owner-group -Zgzip --build "$ROOT" "$DEB" >/dev/null
echo "build-deb: $DEB ($(du -h "$DEB" | cut -f1))"
