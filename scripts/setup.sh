#!/usr/bin/env bash
# Install what InsPro Edge needs on Debian 12, idempotently: Debian packages (GStreamer 1.22 dev
# and plugins, mosquitto with mosquitto_passwd for the TLS tests, the system CA store,
# pkg-config), a Rust toolchain check, and a Python venv with the onnxruntime wheel whose
# libonnxruntime.so the ONNX Runtime engine loads (plus paho-mqtt and pycocotools for
# examples/subscriber.py).
#
#   scripts/setup.sh            # everything
#   scripts/setup.sh apt        # Debian packages only
#   scripts/setup.sh python     # the venv + onnxruntime only
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${INSPRO_VENV:-$here/.venv}"
ort_version="${INSPRO_ORT_VERSION:-1.31.1}"
paho_version="2.2.0"
pycocotools_version="2.0.11"
what="${1:-all}"

apt_packages=(
  pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  mosquitto mosquitto-clients
  curl
  chromium chromium-driver
  ca-certificates
  systemd procps
  python3-venv
  python3-gi gir1.2-gstreamer-1.0
  fonts-dejavu-core
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: Debian packages present"
    return
  fi
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python() {
  local py="$venv/bin/python"
  if [ -x "$py" ] && "$py" -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$ort_version')" 2>/dev/null; then
    echo "setup: onnxruntime $ort_version present in $venv"
    install_subscriber_deps
    return
  fi
  local base
  base="$(command -v python3)"
  # A python without ensurepip (Debian's without python3-venv) cannot make a venv.
  "$base" -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; "$base" -m venv --without-pip "$venv"; "$venv/bin/python" -m ensurepip -q || true; }
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "onnxruntime==$ort_version"
  echo "setup: onnxruntime $("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') in $venv"
  install_subscriber_deps
}

# What examples/subscriber.py needs (an MQTT client and the COCO RLE decoder); its test runs it.
install_subscriber_deps() {
  if "$venv/bin/python" -c "import paho.mqtt, pycocotools.mask" 2>/dev/null; then
    return
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "paho-mqtt==$paho_version" "pycocotools==$pycocotools_version"
  echo "setup: paho-mqtt $paho_version and pycocotools $pycocotools_version in $venv"
}

check_rust() {
  command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
}

case "$what" in
  apt) install_apt ;;
  python) install_python ;;
  all) install_apt; check_rust; install_python ;;
  *) echo "usage: $0 [all|apt|python]" >&2; exit 2 ;;
esac
