#!/usr/bin/env python3
"""What the HTTP API and the page cost the engine: the daemon's engine frames/s on one camera with
no viewer, and with 10 live viewers (MJPEG) plus 100 API requests a second, in one run of this
script (alternating, `--rounds` each), on loopback only.

The camera is a synthetic clip read under `pace = "block"`, so its frames/s is the engine's
throughput; each daemon run logs it at the end of the stream ("end of stream ... fps=").

  cargo build --release --features edge --example http_load
  .venv/bin/python scripts/api-load.py [--bin target/release/inspro] [--frames 300]
      [--size 320x192] [--viewers 10] [--rps 100] [--rounds 2]

Benchmarks want a quiet machine (no build, no training beside them): the numbers go in
docs/perf.md with the machine, the date and the load average.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def thread_cpu(pid):
    """CPU seconds of each of the daemon's threads, grouped by what they do (thread names)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = (comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def group(comm):
    """infer: the engine thread and ONNX Runtime's pool; http: the IO runtime and its blocking
    threads (axum, SQLite reads); live: the MJPEG encoder; the rest: GStreamer, MQTT, store."""
    if comm.startswith("infer-") or comm in ("inspro",):
        return "infer"
    if comm.startswith("inspro-io") or comm.startswith("tokio"):
        return "http"
    if comm.startswith("live-"):
        return "live"
    return "other"


def run(args, work, clip, broker_port, loaded):
    port = free_port()
    w, h = args.size.split("x")
    cfg = os.path.join(work, "edge.toml")
    with open(cfg, "w") as f:
        f.write(f"""[model]
config = "{HERE}/configs/models/inspro-tiny.toml"

[[camera]]
name = "cam"
uri = "file://{clip}"
width = {w}
height = {h}
pace = "block"

[tracking]
birth_score = 0.15
keep_score = 0.1
birth_nms_iou = 0.5

[mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
client_id = "api-load"
topic_prefix = "load"

[service]
spool_dir = "{work}/spool"

[http]
listen = "127.0.0.1:{port}"
""")
    log = os.path.join(work, "daemon.log")
    env = dict(os.environ, RUST_LOG="info")
    with open(log, "w") as lf:
        d = subprocess.Popen([args.bin, "run", "--config", cfg, "--exit-on-eos"], env=env,
                             stdout=lf, stderr=lf)
        client = None
        if loaded:
            wait_port(port)
            client = subprocess.Popen([args.client, str(port), "cam", str(args.viewers),
                                       str(args.rps), "1e9"], stdout=subprocess.PIPE, text=True)
        t0 = time.time()
        last = {}
        while d.poll() is None:
            last.update(thread_cpu(d.pid))
            time.sleep(0.25)
        took = time.time() - t0
        counts = {"requests": 0, "errors": 0, "live_bytes": 0, "cpu_s": 0.0}
        if client is not None:
            counts = json.loads(client.communicate(timeout=30)[0].strip().splitlines()[-1])
    cpu = {}
    for comm, sec in last.values():
        cpu[group(comm)] = cpu.get(group(comm), 0.0) + sec
    counts["daemon_cpu"] = cpu
    text = open(log).read()
    m = re.search(r'end of stream frames=(\d+) fps="([\d.]+)"', text)
    if not m:
        sys.exit(f"no 'end of stream' line in {log}:\n{text[-2000:]}")
    return float(m.group(2)), counts, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "target/release/inspro"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="320x192")
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--rps", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--client", default=os.path.join(HERE, "target/release/examples/http_load"),
                    help="the load client (cargo build --release --example http_load)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="inspro-api-load-")
    clip = os.path.join(work, "clip.mkv")
    subprocess.run([args.bin, "synth", "--clip", clip, "--frames", str(args.frames), "--size",
                    args.size, "--seed", "4711"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    broker_port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        if os.getuid() == 0:
            f.write("user root\n")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_port(broker_port)
    base, loaded, costs = [], [], []
    try:
        for r in range(args.rounds):
            fps, c0, _ = run(args, work, clip, broker_port, False)
            base.append(fps)
            fps_l, counts, took = run(args, work, clip, broker_port, True)
            loaded.append(fps_l)
            cpu0 = " ".join(f"{k} {v:.1f}" for k, v in sorted(c0["daemon_cpu"].items()))
            cpu1 = " ".join(f"{k} {v:.1f}" for k, v in sorted(counts["daemon_cpu"].items()))
            print(f"round {r + 1}: none {fps:.2f} fps (daemon CPU s: {cpu0}); {args.viewers} viewers "
                  f"+ {args.rps:.0f} req/s {fps_l:.2f} fps ({counts['requests'] / took:.0f} req/s "
                  f"served, {counts['errors']} errors, {counts['live_bytes'] / took / 1e6:.2f} MB/s "
                  f"of MJPEG; daemon CPU s: {cpu1}; client CPU {counts['cpu_s']:.1f} s in {took:.1f} s)",
                  flush=True)
            costs.append((counts["daemon_cpu"].get("http", 0) + counts["daemon_cpu"].get("live", 0))
                         / max(counts["daemon_cpu"].get("infer", 0), 1e-9))
    finally:
        broker.terminate()
    b, l = statistics.median(base), statistics.median(loaded)
    print(json.dumps({"engine_fps_none": b, "engine_fps_loaded": l, "kept": l / b,
                      "http_and_live_cpu_per_engine_cpu": statistics.median(costs),
                      "viewers": args.viewers, "rps": args.rps, "frames": args.frames,
                      "size": args.size, "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    sys.exit(main())
