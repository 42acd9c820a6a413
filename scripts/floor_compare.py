#!/usr/bin/env python3
"""The webhook beside the I/O floor: both Lambda binaries under the same
Runtime API emulation on loopback, against the same fake ServiceNow, with
the same events, run one after the other in rounds (the machine is noisy:
compare within a round, as ratios).

The floor (../shared/anchors/floor-io) is a bare lambda_http function that
does only the unavoidable I/O: one redb lookup per event, a POST and a
commit for a new alert, a PATCH and a commit for a resolve. Ours does the
same I/O plus the token check, the mapping, the correlation record and its
logs. Per binary and round: CPU per event (utime + stime of the process,
after a warm-up), p50 and p90 latency (event handed out -> answer back),
peak RSS (VmHWM) and where the resident memory is at the end (the binary's
own file mappings, heap and stacks, shared libraries: /proc/PID/smaps),
binary size.

    cargo build --release --bin itsm-bridge
    (cd ../shared/anchors/floor-io && cargo build --release)   # or a copy of it
    cargo build --bin replay                                    # signs the dev token
    python3 scripts/floor_compare.py --floor PATH/TO/floor-io [--ours NAME=PATH ...]
        [--alerts 400] [--rounds 3]

CPU is in microseconds per event (the kernel counts in 10 ms ticks: a few
hundred events per round keep that error small), latencies in ms, RSS in MB.

Each round: `--alerts` alerts, each Fired, Fired again (a duplicate: a
lookup only), then Resolved: 3 events per alert.
"""

import argparse
import http.server
import json
import os
import queue
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

TICKS = os.sysconf("SC_CLK_TCK")


class Itsm(http.server.BaseHTTPRequestHandler):
    """ServiceNow's Table API, as little as both binaries need."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, Nagle's
    # algorithm and the client's delayed ACK add 40 ms to every answer.
    disable_nagle_algorithm = True
    n = 0
    lock = threading.Lock()

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read(self):
        length = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(length) if length else b""

    def do_POST(self):  # noqa: N802
        self._read()
        with Itsm.lock:
            Itsm.n += 1
            n = Itsm.n
        self._answer(201, {"result": {"sys_id": f"{n:032x}", "number": f"INC{n:07d}",
                                      "state": "1"}})

    def do_PATCH(self):  # noqa: N802
        self._read()
        sys_id = self.path.rsplit("/", 1)[-1].split("?")[0]
        self._answer(200, {"result": {"sys_id": sys_id, "number": "INC0000001", "state": "6"}})

    def do_GET(self):  # noqa: N802
        self._answer(200, {"result": []})

    def log_message(self, *args):
        pass


class Runtime(http.server.BaseHTTPRequestHandler):
    """Lambda's Runtime API: hands out `events` one at a time and notes when
    each answer comes back."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    events = None  # queue.Queue of (request_id, body) or None to stop
    sent = {}
    latencies = []
    answers = None  # queue.Queue of statuses

    def do_GET(self):  # noqa: N802
        item = Runtime.events.get()
        if item is None:
            time.sleep(3600)
            return
        request_id, body = item
        data = body.encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 15000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                         "arn:aws:lambda:eu-west-1:123456789012:function:bridge")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        Runtime.sent[request_id] = time.perf_counter()
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else b""
        request_id = self.path.split("/")[-2]
        took = time.perf_counter() - Runtime.sent.pop(request_id, time.perf_counter())
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        status = None
        if self.path.endswith("/response"):
            try:
                status = json.loads(body).get("statusCode")
            except ValueError:
                status = None
        Runtime.latencies.append(took)
        Runtime.answers.put(status if self.path.endswith("/response") else "error")

    def log_message(self, *args):
        pass


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A binary stopped while it waits for its next event resets that
    # connection: expected, not worth a traceback.
    server.handle_error = lambda request, address: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def resident_kb(pid, binary):
    """Where the resident memory is, from /proc/PID/smaps: the binary's own
    mappings (code, read-only data, relocated data), the heap and other
    anonymous memory, and the shared libraries (libc, the loader)."""
    own = os.path.realpath(binary)
    parts = {"binary": 0, "anon": 0, "libs": 0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                path = head[5] if len(head) > 5 else ""
                kind = ("binary" if path == own
                        else "libs" if path.startswith("/") else "anon")
            elif head[0] == "Rss:":
                parts[kind] += int(head[1])
    return parts


def events(template, token, alerts, tag):
    """Fired, Fired again, Resolved for each alert, as function URL events."""
    out = []
    for i in range(alerts):
        body = json.loads(template["body"])
        alert_id = (f"/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/"
                    f"Microsoft.AlertsManagement/alerts/{uuid.UUID(int=(tag << 64) + i)}")
        body["data"]["essentials"]["alertId"] = alert_id
        for condition in ["Fired", "Fired", "Resolved"]:
            body["data"]["essentials"]["monitorCondition"] = condition
            event = dict(template)
            event["headers"] = dict(template["headers"])
            if token:
                event["headers"]["authorization"] = f"Bearer {token}"
            event["body"] = json.dumps(body)
            out.append(json.dumps(event))
    return out


def run(binary, env, evs, warmup):
    runtime = serve(Runtime)
    Runtime.events = queue.Queue()
    Runtime.answers = queue.Queue()
    Runtime.latencies = []
    state = tempfile.mkdtemp()
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "bridge",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bridge",
        "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "_HANDLER": "bootstrap",
        "STATE_DIR": state,
        "TMPDIR": state,
        **env,
    }
    # PERF_OUT=file: profile this binary (its figures then include perf's own).
    # WRAP="valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=F":
    # run ours under that command (scripts/hot_order.py reads what it wrote).
    argv = [binary]
    if os.environ.get("PERF_OUT") and "floor" not in binary:
        argv = ["perf", "record", "-F", "4999", "-g", "-o", os.environ["PERF_OUT"], "--", binary]
    elif os.environ.get("WRAP") and "floor" not in binary:
        argv = os.environ["WRAP"].split() + [binary]
    # LOG_OUT=file: keep ours' log lines (they are otherwise thrown away).
    log = open(os.environ["LOG_OUT"], "ab") if os.environ.get("LOG_OUT") and "floor" not in binary \
        else subprocess.DEVNULL
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=log)
    statuses = []
    try:
        for i, body in enumerate(evs):
            Runtime.events.put((f"req-{i}", body))
            statuses.append(Runtime.answers.get(timeout=30))
            if i + 1 == warmup:
                cpu0 = cpu_secs(proc.pid)
                lat0 = len(Runtime.latencies)
        cpu = cpu_secs(proc.pid) - cpu0
        rss = peak_rss_kb(proc.pid)
        where = resident_kb(proc.pid, binary)
        lat = sorted(Runtime.latencies[lat0:])
    finally:
        Runtime.events.put(None)
        if len(argv) > 1:
            proc.send_signal(2)
            proc.wait(timeout=60)
        else:
            proc.kill()
            proc.wait()
        runtime.shutdown()
    n = len(evs) - warmup
    return {
        "cpu_us": cpu / n * 1e6,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p90_ms": lat[int(len(lat) * 0.9)] * 1000,
        "rss_mb": rss / 1024,
        **{f"{k}_mb": v / 1024 for k, v in where.items()},
        "statuses": {s: statuses.count(s) for s in set(statuses)},
    }


def with_table(args, env):
    """With --dynamodb, a fresh table for the run (replay creates it when it
    sees an endpoint), so every build starts from an empty store."""
    if not args.dynamodb:
        return env
    env = {**env, "CORRELATION_TABLE": f"floor-compare-{uuid.uuid4().hex[:12]}"}
    subprocess.run([args.replay, "--store", "dynamodb", "--state", tempfile.mkdtemp(),
                    "events/metric-static-fired.json"],
                   env={**os.environ, **env}, check=True, capture_output=True)
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", action="append",
                    help="NAME=PATH of a build of ours; repeat to compare builds in one run "
                         "(default: ours=target/release/itsm-bridge)")
    ap.add_argument("--floor", required=True)
    ap.add_argument("--replay", default="target/debug/replay")
    ap.add_argument("--alerts", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dynamodb", metavar="URL",
                    help="ours keeps its records in DynamoDB at URL (moto's server: "
                         "`.moto-venv/bin/moto_server -p 5077`), a new table per run, "
                         "as deployed; the floor keeps its embedded store")
    args = ap.parse_args()

    itsm = serve(Itsm)
    itsm_url = f"http://127.0.0.1:{itsm.server_address[1]}"
    keys = tempfile.mkdtemp()
    printed = subprocess.run([args.replay, "--state", keys, "--print-event",
                              "events/metric-static-fired.json"],
                             check=True, capture_output=True, text=True).stdout
    template = json.loads(printed)
    token = template["headers"]["authorization"].split(" ", 1)[1]
    common = {"SERVICENOW_INSTANCE_URL": itsm_url, "SERVICENOW_USERNAME": "bridge",
              "SERVICENOW_PASSWORD": "secret"}
    ours_env = {**common,
                "ENTRA_JWKS_URL": f"file://{keys}/dev-jwks.json",
                "ENTRA_TENANT_ID": "00000000-0000-4000-8000-00000000da7a",
                "ENTRA_AUDIENCES": "api://itsm-bridge-dev"}
    if args.dynamodb:
        ours_env.update({"AWS_ENDPOINT_URL": args.dynamodb, "AWS_REGION": "us-east-1",
                         "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    warmup = 30
    builds = [o.split("=", 1) for o in (args.ours or ["ours=target/release/itsm-bridge"])]
    rows = {name: [] for name, _ in builds}
    for r in range(args.rounds):
        evs = events(template, token, args.alerts, r + 1)
        # The floor before and after the builds: each is judged against
        # their mean, so that a drift of the machine within the round cancels.
        before = run(args.floor, common, evs, warmup)
        done = [(name, run(path, with_table(args, ours_env), evs, warmup))
                for name, path in builds]
        after = run(args.floor, common, evs, warmup)
        floor = {k: (before[k] + after[k]) / 2 for k, v in before.items()
                 if isinstance(v, float)}
        print(f"round {r + 1}: floor {before} / {after}", flush=True)
        for name, ours in done:
            rows[name].append((floor, ours))
            print(f"         {name} {ours}", flush=True)
    print(f"\n{args.rounds} rounds of {3 * args.alerts} events ({warmup} warm-up); "
          "ranges over rounds, ratios to the floor of the same round")
    for name, path in builds:
        print(f"\n{name} ({path}, {os.path.getsize(path) / 1e6:.2f} MB; "
              f"floor {os.path.getsize(args.floor) / 1e6:.2f} MB)")
        for key, label in [("cpu_us", "CPU per event"), ("p50_ms", "p50"), ("p90_ms", "p90"),
                           ("rss_mb", "peak RSS"), ("binary_mb", "  its code/data"),
                           ("anon_mb", "  heap, stacks"), ("libs_mb", "  libc, loader")]:
            f = [f[key] for f, _ in rows[name]]
            o = [o[key] for _, o in rows[name]]
            rs = [o[key] / f[key] for f, o in rows[name]]
            print(f"  {label:14} floor {min(f):8.2f}-{max(f):8.2f}  ours {min(o):8.2f}-"
                  f"{max(o):8.2f}  ratio {min(rs):.2f}-{max(rs):.2f} "
                  f"(median {statistics.median(rs):.2f})")


if __name__ == "__main__":
    main()
