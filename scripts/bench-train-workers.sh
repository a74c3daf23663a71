#!/usr/bin/env bash
# Clips/s of `inspro train` with 1 and 2 data-parallel workers, one after the other in one run,
# on a training config (default: the dense recipe's phase 2). Refuses to record on a busy
# machine (1-minute load average above 0.5) unless FORCE=1.
#
#   scripts/bench-train-workers.sh [CONFIG] [ITERATIONS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cfg="${1:-configs/train/inspro-tiny-dense.toml}"
iters="${2:-100}"
bin="${INSPRO_BIN:-./target/release/inspro}"
load="$(cut -d' ' -f1 /proc/loadavg)"
if python3 -c "import sys; sys.exit(0 if float('$load') > 0.5 else 1)" && [ -z "${FORCE:-}" ]; then
  echo "load average $load > 0.5: not a quiet machine, nothing recorded (FORCE=1 runs anyway)" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "date $(date -u +%FT%TZ), $(nproc) cores, load before $load, config $cfg, $iters iterations"
for w in 1 2; do
  # No evaluation or probe: only the training steps are timed.
  sed -e '/^\[probe\]/,$d' -e 's/^eval_every = .*/eval_every = 0/' "$cfg" > "$tmp/cfg.toml"
  "$bin" train --config "$tmp/cfg.toml" --out-dir "$tmp/w$w" --iterations "$iters" --workers "$w" \
    >"$tmp/w$w.log" 2>&1 || { cat "$tmp/w$w.log" >&2; exit 1; }
  python3 - "$tmp/w$w/metrics.jsonl" "$w" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"iter_per_s"' in l]
w = int(sys.argv[2])
steady = rows[1:] or rows  # the first window holds the warm-up
ips = sum(r["iter_per_s"] for r in steady) / len(steady)
print(f"workers {w}: {ips:.2f} iterations/s = {ips * w:.2f} clips/s")
PY
done
