#!/usr/bin/env python3
"""What the HTTP API and the page cost the engine: the daemon's engine frames/s on one camera with
no viewer, and with 10 live viewers (MJPEG) plus 100 API requests a second, on loopback only. The
load comes from a small Rust client (examples/http_load.rs: one event loop, requests evenly
spaced, on keep-alive connections as a browser's fetch() sends them, or `--connection close`), and
the daemon's CPU time and involuntary context switches are read per thread (/proc/<pid>/task), so
the server's own share (its IO thread and the live encoder) is seen apart from the engine's.

Two designs:
- `--pairs N` (the one docs/perf.md reports): one daemon on the clip looped; the load on and off
  in turn, N times, frames/s over `--window` seconds of each (read from /metrics); each pair's
  ratio compares two windows under a minute apart, so the machine's drift (this VM's engine rate
  moves by +-10 % between runs minutes apart) falls out of it. The median of the N ratios.
- `--rounds N`: separate daemon runs over the whole clip, alternating none / loaded; the clip
  read under `pace = "block"`, so its frames/s is the engine's throughput ("end of stream ...
  fps=" in each run's log).

With `--clips` it measures event clips instead: the same clip with `[camera.clips]` off and on,
the daemon's CPU seconds per frame either way and those of its clip writer thread.

  cargo build --release --features edge --example http_load
  .venv/bin/python scripts/api-load.py --frames 6000 --pairs 16 [--window 8]
      [--model inspro-small] [--size 320x192] [--viewers 10] [--rps 100]
      [--connection keep-alive|close] [--client-nice 0] [--coalesce-ms 20] [--burst 1]
  .venv/bin/python scripts/api-load.py --frames 2000 --rounds 5
  .venv/bin/python scripts/api-load.py --clips --camera-size 1280x720 [--frames 300]

Benchmarks want a quiet machine (no build, no training beside them): the numbers go in
docs/perf.md with the machine, the date and the load average.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


def thread_cpu(pid):
    """CPU seconds and involuntary context switches (times a thread lost its core while it could
    run) of each of the daemon's threads, keyed by thread id, with the thread's name."""
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
        preempted = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        preempted = int(line.split()[1])
        except OSError:
            pass
        out[tid] = (comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), preempted)
    return out


def group(comm):
    """infer: the engine thread and ONNX Runtime's pool; http: the HTTP server's thread and its
    blocking threads (axum, SQLite reads); live: the MJPEG encoder (its thread and jpegenc's, also
    the snapshots'); io: the IO runtime (MQTT, signals); the rest: GStreamer, the store's writer."""
    if comm.startswith("infer-") or comm in ("inspro",):
        return "infer"
    if comm.startswith("http"):
        return "http"
    if comm.startswith("inspro-io") or comm.startswith("tokio"):
        return "io"
    if comm.startswith("live-") or comm.startswith("jpeg:"):
        return "live"
    if comm.startswith("clip-"):
        return "clip"
    return "other"


def write_config(args, work, clip, broker_port, port, clips=False, loop=False):
    shutil.rmtree(os.path.join(work, "spool"), ignore_errors=True)
    w, h = args.size.split("x")
    cfg = os.path.join(work, "edge.toml")
    with open(cfg, "w") as f:
        f.write(f"""[model]
config = "{HERE}/configs/models/{args.model}.toml"

[[camera]]
name = "cam"
uri = "file://{clip}"
width = {w}
height = {h}
pace = "block"
loop_file = {"true" if loop else "false"}
{"[camera.clips]" + chr(10) + "enabled = true" if clips else ""}

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
nice = {args.http_nice}
{"" if args.coalesce_ms is None else f"coalesce_ms = {args.coalesce_ms}"}
""")
    return cfg


def daemon_env(args):
    env = dict(os.environ, RUST_LOG="info")
    if args.spin != "default":
        env["INSPRO__ENGINE__SPIN"] = "true" if args.spin == "on" else "false"
    return env


def client_cmd(args, port, seconds=1e9):
    return [args.client, str(port), "cam", str(args.viewers), str(args.rps), str(seconds),
            str(args.burst), args.connection]


def start_client(args, port, seconds=1e9):
    """The load client, at `--client-nice`."""
    nice = args.client_nice
    return subprocess.Popen(client_cmd(args, port, seconds), stdout=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def run(args, work, clip, broker_port, loaded, clips=False):
    port = free_port()
    cfg = write_config(args, work, clip, broker_port, port, clips=clips)
    log = os.path.join(work, "daemon.log")
    env = daemon_env(args)
    with open(log, "w") as lf:
        d = subprocess.Popen([args.bin, "run", "--config", cfg, "--exit-on-eos"], env=env,
                             stdout=lf, stderr=lf)
        client = None
        if loaded:
            wait_port(port)
            client = start_client(args, port)
        t0 = time.time()
        last = {}
        while d.poll() is None:
            last.update(thread_cpu(d.pid))
            time.sleep(0.25)
        took = time.time() - t0
        counts = {"requests": 0, "errors": 0, "live_bytes": 0, "cpu_s": 0.0}
        if client is not None:
            counts = json.loads(client.communicate(timeout=30)[0].strip().splitlines()[-1])
    cpu, preempted = {}, 0
    for comm, sec, nv in last.values():
        cpu[group(comm)] = cpu.get(group(comm), 0.0) + sec
        if group(comm) == "infer":
            preempted += nv
    counts["daemon_cpu"] = cpu
    counts["engine_preempted"] = preempted
    text = open(log).read()
    m = re.search(r'end of stream frames=(\d+) fps="([\d.]+)"', text)
    if not m:
        sys.exit(f"no 'end of stream' line in {log}:\n{text[-2000:]}")
    c = re.search(r'clip writer ended .*clips=(\d+) bytes=(\d+) cpu_ms="([\d.]+)"', text)
    counts["clips"] = (int(c.group(1)), int(c.group(2)), float(c.group(3))) if c else (0, 0, 0.0)
    return float(m.group(2)), counts, took


def frames_processed(port):
    """The daemon's count of the camera's processed frames (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^inspro_frames_processed_total\{camera="cam"\} (\d+)', text, re.M)
    if not m:
        sys.exit("no inspro_frames_processed_total for camera cam in /metrics")
    return int(m.group(1))


def restarts(log):
    with open(log) as f:
        return f.read().count("file looped")


def window(pid, port, seconds, log):
    """The engine's frames/s over `seconds`, its threads' CPU seconds and their preemptions; a
    window in which the looped clip restarted (the pipeline rebuilt) is measured again."""
    for _ in range(5):
        n = restarts(log)
        before, f0, t0 = thread_cpu(pid), frames_processed(port), time.monotonic()
        time.sleep(seconds)
        after, f1, t1 = thread_cpu(pid), frames_processed(port), time.monotonic()
        if restarts(log) == n:
            break
    cpu = pre = 0.0
    for tid, (comm, sec, nv) in after.items():
        if group(comm) == "infer" and tid in before:
            cpu += sec - before[tid][1]
            pre += nv - before[tid][2]
    return (f1 - f0) / (t1 - t0), cpu, pre / (t1 - t0)


def interleaved(args, work, clip, broker_port):
    """One daemon on the clip looped; the load on and off in turn, `--pairs` times (which of the
    two comes first alternates), frames/s measured over `--window` seconds of each: once the
    client has run for 5 s, and once the live view has stopped (it runs on for live.rs's
    WANT_FOR, 10 s, after the last viewer). Each pair's ratio compares two windows a minute
    apart at most, so the machine's own drift over the run (this VM's engine rate moved by
    +-10 % between runs minutes apart) falls out of it."""
    port = free_port()
    cfg = write_config(args, work, clip, broker_port, port, loop=True)
    log_path = os.path.join(work, "daemon.log")
    log = open(log_path, "w")
    d = subprocess.Popen([args.bin, "run", "--config", cfg], env=daemon_env(args),
                         stdout=log, stderr=log)
    rows = []
    try:
        wait_port(port)
        time.sleep(10)  # warm-up: the model loaded, the first frames through
        for p in range(args.pairs):
            fps = {}
            for loaded in ((False, True) if p % 2 == 0 else (True, False)):
                if loaded:
                    # The client runs out by itself just after the window (a window measured
                    # again after a restart of the clip outlasts it: it is stopped then).
                    client = start_client(args, port, 5 + args.window + 0.5)
                    time.sleep(5)
                    fps[True] = window(d.pid, port, args.window, log_path)
                    try:
                        out = client.communicate(timeout=5)[0]
                        c = json.loads(out.strip().splitlines()[-1])
                        served = c["requests"] / c["seconds"]
                        errors = c["errors"]
                    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
                        client.kill()
                        client.communicate()
                        served, errors = float("nan"), 0
                else:
                    time.sleep(11)
                    fps[False] = window(d.pid, port, args.window, log_path)
            ratio = fps[True][0] / fps[False][0]
            rows.append((fps[False], fps[True], ratio, served, errors))
            print(f"pair {p + 1}: none {fps[False][0]:.1f} fps (engine CPU {fps[False][1]:.1f} s, "
                  f"preempted {fps[False][2]:.0f}/s); {args.viewers} viewers + {args.rps:.0f} "
                  f"req/s {fps[True][0]:.1f} fps (engine CPU {fps[True][1]:.1f} s, preempted "
                  f"{fps[True][2]:.0f}/s; {served:.0f} req/s served, {errors} errors); "
                  f"kept {ratio:.3f}", flush=True)
    finally:
        d.terminate()
        d.wait(timeout=60)
    ratios = sorted(r[2] for r in rows)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    print(json.dumps({"kept_median": statistics.median(ratios), "kept_mean": statistics.mean(ratios),
                      "kept_quartiles": [q[0], q[2]], "kept_min": ratios[0], "kept_max": ratios[-1],
                      "pairs": len(ratios), "window_s": args.window,
                      "fps_none_median": statistics.median(r[0][0] for r in rows),
                      "fps_loaded_median": statistics.median(r[1][0] for r in rows),
                      "served_per_s_median": statistics.median(r[3] for r in rows),
                      "errors": sum(r[4] for r in rows), "client_nice": args.client_nice,
                      "viewers": args.viewers, "rps": args.rps, "connection": args.connection,
                      "coalesce_ms": args.coalesce_ms, "http_nice": args.http_nice,
                      "size": args.size, "load_avg": os.getloadavg()[0]}))


def clip_rounds(args, work, clip, broker_port):
    """`[camera.clips]` off and on, alternating: CPU ms per frame of the whole daemon, and the
    time the daemon itself counts on clips (the probe's pushes and the muxing)."""
    rows = {False: [], True: []}
    for r in range(args.rounds):
        for on in (False, True):
            fps, counts, took = run(args, work, clip, broker_port, False, clips=on)
            cpu = counts["daemon_cpu"]
            per_frame = sum(cpu.values()) / args.frames * 1e3
            n, size, clip_ms = counts["clips"]
            rows[on].append((fps, per_frame, clip_ms / args.frames))
            print(f"round {r + 1}: clips {'on ' if on else 'off'} {fps:.1f} fps, daemon CPU "
                  f"{per_frame:.2f} ms/frame; clips: {n} written, {size / 1e6:.2f} MB, "
                  f"{clip_ms:.1f} ms of CPU (probe and muxing) = {clip_ms / args.frames:.3f} "
                  f"ms/frame", flush=True)
    med = lambda on, i: statistics.median(x[i] for x in rows[on])
    print(json.dumps({"fps_off": med(False, 0), "fps_on": med(True, 0),
                      "cpu_ms_per_frame_off": med(False, 1), "cpu_ms_per_frame_on": med(True, 1),
                      "clip_ms_per_frame": med(True, 2),
                      "camera_size": args.camera_size, "size": args.size, "frames": args.frames,
                      "load_avg": os.getloadavg()[0]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "target/release/inspro"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--model", default="inspro-small",
                    help="a name under configs/models/ (default the shipped inspro-small; the runs "
                         "before 2026-12-07 afternoon used inspro-tiny)")
    ap.add_argument("--size", default="320x192")
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--rps", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=0,
                    help="interleaved: one daemon on the clip looped, the load on and off this "
                         "many times (default 0: --rounds of separate daemon runs)")
    ap.add_argument("--window", type=float, default=10.0,
                    help="with --pairs: seconds each frames/s is measured over")
    ap.add_argument("--client-nice", type=int, default=0,
                    help="the load client's nice value (default 0)")
    ap.add_argument("--burst", type=int, default=1,
                    help="requests the client sends together (default 1: evenly spaced)")
    ap.add_argument("--http-nice", type=int, default=10,
                    help="[http] nice: the server's and live encoders' nice value (0: the engine's)")
    ap.add_argument("--connection", choices=["close", "keep-alive"], default="keep-alive",
                    help="keep-alive (default): requests reuse idle connections, as the page's "
                         "fetch() calls in a browser do; close: each on a connection of its own")
    ap.add_argument("--coalesce-ms", type=int, default=None,
                    help="[http] coalesce_ms (default: the daemon's, 20; 0 handles each request "
                         "and live frame at once)")
    ap.add_argument("--spin", choices=["default", "on", "off"], default="default",
                    help="[engine] spin: whether ONNX Runtime's idle threads spin (default: the daemon's)")
    ap.add_argument("--clips", action="store_true",
                    help="measure event clips (off against on) instead of the HTTP load")
    ap.add_argument("--camera-size", default=None,
                    help="the synthetic camera's own size (default: --size); the engine gets --size")
    ap.add_argument("--client", default=os.path.join(HERE, "target/release/examples/http_load"),
                    help="the load client (cargo build --release --example http_load)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="inspro-api-load-")
    clip = os.path.join(work, "clip.mkv")
    args.camera_size = args.camera_size or args.size
    subprocess.run([args.bin, "synth", "--clip", clip, "--frames", str(args.frames), "--size",
                    args.camera_size, "--seed", "4711"], check=True, stdout=subprocess.DEVNULL,
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
    other = interleaved if args.pairs else clip_rounds if args.clips else None
    if other:
        try:
            other(args, work, clip, broker_port)
        finally:
            broker.terminate()
        return 0
    base, loaded, costs, ratios = [], [], [], []
    try:
        for r in range(args.rounds):
            fps, c0, took0 = run(args, work, clip, broker_port, False)
            base.append(fps)
            fps_l, counts, took = run(args, work, clip, broker_port, True)
            loaded.append(fps_l)
            cpu0 = " ".join(f"{k} {v:.1f}" for k, v in sorted(c0["daemon_cpu"].items()))
            cpu1 = " ".join(f"{k} {v:.1f}" for k, v in sorted(counts["daemon_cpu"].items()))
            ratios.append(fps_l / fps)
            print(f"round {r + 1}: none {fps:.2f} fps (daemon CPU s: {cpu0}; engine preempted "
                  f"{c0['engine_preempted'] / took0:.0f}/s); {args.viewers} viewers "
                  f"+ {args.rps:.0f} req/s {fps_l:.2f} fps ({counts['requests'] / took:.0f} req/s "
                  f"served, {counts['errors']} errors, {counts.get('cut', 0)} cut at the end, {counts['live_bytes'] / took / 1e6:.2f} MB/s "
                  f"of MJPEG; daemon CPU s: {cpu1}; engine preempted "
                  f"{counts['engine_preempted'] / took:.0f}/s; client CPU {counts['cpu_s']:.1f} s "
                  f"in {took:.1f} s); kept {fps_l / fps:.3f}",
                  flush=True)
            costs.append((counts["daemon_cpu"].get("http", 0) + counts["daemon_cpu"].get("live", 0))
                         / max(counts["daemon_cpu"].get("infer", 0), 1e-9))
    finally:
        broker.terminate()
    b, l = statistics.median(base), statistics.median(loaded)
    print(json.dumps({"engine_fps_none": b, "engine_fps_loaded": l, "kept": l / b,
                      "kept_by_round_median": statistics.median(ratios),
                      "http_and_live_cpu_per_engine_cpu": statistics.median(costs),
                      "viewers": args.viewers, "rps": args.rps, "http_nice": args.http_nice, "coalesce_ms": args.coalesce_ms, "burst": args.burst, "connection": args.connection, "spin": args.spin, "frames": args.frames,
                      "size": args.size, "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    sys.exit(main())
