#!/usr/bin/env bash
# Verify systemd/inspro.service offline, as systemd would load it: stage a root with the unit,
# the binary at /usr/bin/inspro and /bin/kill (ExecStart/ExecReload must exist), then
#   systemd-analyze verify --man=no --recursive-errors=no --root=STAGE
# (--recursive-errors=no turns warnings about the unit itself, e.g. unknown keys, into rc=1;
# --man=no skips man pages for Documentation=). Also prints the offline security score.
#
#   scripts/verify-unit.sh [path/to/inspro]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$here/target/release/inspro}"
[ -x "$bin" ] || { echo "verify-unit: no binary at $bin (build it first)" >&2; exit 2; }
command -v systemd-analyze >/dev/null || { echo "verify-unit: systemd-analyze not found (apt-get install systemd)" >&2; exit 2; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/usr/bin" "$stage/bin" "$stage/etc/systemd/system"
cp "$bin" "$stage/usr/bin/inspro"
cp "$(type -P kill)" "$stage/bin/kill"
cp "$here/systemd/inspro.service" "$stage/etc/systemd/system/"
systemd-analyze verify --man=no --recursive-errors=no --root="$stage" \
  "$stage/etc/systemd/system/inspro.service"
echo "verify-unit: systemd/inspro.service ok"
systemd-analyze security --offline=yes --root="$stage" "$stage/etc/systemd/system/inspro.service" 2>/dev/null \
  | grep -i "overall exposure" || true
