#!/usr/bin/env python3
"""What the HTTP API and the page cost the engine: the daemon's engine frames/s on one camera with
no viewer, and with 10 live viewers (MJPEG) plus 100 API requests a second, in one run of this
script (alternating, `--rounds` each), on loopback only.

The camera is a synthetic clip read under `pace = "block"`, so its frames/s is the engine's
throughput; each daemon run logs it at the end of the stream ("end of stream ... fps=").

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
import threading
import time
import urllib.request

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


NICE_CLIENTS = False


def lowest_priority():
    """The viewers would be other machines: here they share the daemon's cores, so each load
    thread runs at the lowest priority (Linux: per thread) and takes what the daemon leaves."""
    if NICE_CLIENTS:
        os.setpriority(os.PRIO_PROCESS, 0, 19)


def viewer(port, stop, counts):
    """Read /api/cam/live until told to stop (or the daemon goes)."""
    lowest_priority()
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /api/cam/live HTTP/1.1\r\nHost: x\r\n\r\n")
            while not stop.is_set():
                data = s.recv(65536)
                if not data:
                    break
                counts["live_bytes"] += len(data)
            s.close()
        except OSError:
            time.sleep(0.1)


def requester(port, stop, rps, counts):
    lowest_priority()
    paths = ["/api/cameras", "/api/events?limit=50", "/api/health", "/metrics"]
    period = 1.0 / rps
    i = 0
    nxt = time.time()
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{paths[i % len(paths)]}", timeout=2) as r:
                r.read()
            counts["requests"] += 1
        except OSError:
            counts["errors"] += 1
        i += 1
        nxt += period
        time.sleep(max(0.0, nxt - time.time()))


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
        stop = threading.Event()
        counts = {"live_bytes": 0, "requests": 0, "errors": 0}
        threads = []
        if loaded:
            wait_port(port)
            threads = [threading.Thread(target=viewer, args=(port, stop, counts), daemon=True)
                       for _ in range(args.viewers)]
            threads.append(threading.Thread(target=requester, args=(port, stop, args.rps, counts),
                                            daemon=True))
            for t in threads:
                t.start()
        t0 = time.time()
        d.wait(timeout=1200)
        stop.set()
        took = time.time() - t0
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
    ap.add_argument("--nice-clients", action="store_true",
                    help="run the load threads at the lowest priority (on a 2-core box they then "
                         "cannot keep up 100 requests/s)")
    args = ap.parse_args()
    global NICE_CLIENTS
    NICE_CLIENTS = args.nice_clients
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
    base, loaded = [], []
    try:
        for r in range(args.rounds):
            fps, _, _ = run(args, work, clip, broker_port, False)
            base.append(fps)
            fps_l, counts, took = run(args, work, clip, broker_port, True)
            loaded.append(fps_l)
            print(f"round {r + 1}: none {fps:.2f} fps; {args.viewers} viewers + {args.rps:.0f} req/s "
                  f"{fps_l:.2f} fps ({counts['requests'] / took:.0f} req/s served, "
                  f"{counts['errors']} errors, {counts['live_bytes'] / took / 1e6:.2f} MB/s of MJPEG)",
                  flush=True)
    finally:
        broker.terminate()
    b, l = statistics.median(base), statistics.median(loaded)
    print(json.dumps({"engine_fps_none": b, "engine_fps_loaded": l, "kept": l / b,
                      "viewers": args.viewers, "rps": args.rps, "frames": args.frames,
                      "size": args.size, "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    sys.exit(main())
