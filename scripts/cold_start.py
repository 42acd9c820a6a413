#!/usr/bin/env python3
"""Cold start of the Lambda binary: from process start until it asks the
Lambda Runtime API for its first event (configuration read, clients built),
with no network but loopback. A fake Runtime API on 127.0.0.1 notes when the
first `GET /runtime/invocation/next` arrives.

    cargo build --release --bin itsm-bridge
    python3 scripts/cold_start.py [--runs 30] [--binary target/release/itsm-bridge]

Prints the median and 90th percentile for the embedded store and for the AWS
setup (DynamoDB table and Secrets Manager secret configured: the AWS SDK's
configuration is loaded, nothing is fetched).
"""

import argparse
import http.server
import os
import statistics
import subprocess
import tempfile
import threading
import time


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    first_next = None
    event = threading.Event()

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if "/runtime/invocation/next" in self.path and RuntimeApi.first_next is None:
            RuntimeApi.first_next = time.perf_counter()
            RuntimeApi.event.set()
        # Never hand out an event: the measurement ends here.
        time.sleep(5)

    def log_message(self, *args):
        pass


def base_env(state_dir):
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_NAME": "itsm-bridge",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "cold-start",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/itsm-bridge",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "ENTRA_TENANT_ID": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
        "ENTRA_AUDIENCES": "api://itsm-bridge",
        "ENTRA_REQUIRED_ROLE": "ActionGroupsSecureWebhook",
        "SERVICENOW_INSTANCE_URL": "https://example.service-now.com",
        "SERVICENOW_USERNAME": "bridge",
        "SERVICENOW_PASSWORD": "not-used",
        "STATE_DIR": state_dir,
    }


AWS = {
    "CORRELATION_TABLE": "itsm-bridge-correlation",
    "ITSM_SECRET_ID": "itsm-bridge/servicenow",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "not-used",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def once(binary, env):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RuntimeApi.first_next = None
    RuntimeApi.event.clear()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not RuntimeApi.event.wait(10):
            raise SystemExit(f"{binary} never asked for an event (exit code {proc.poll()})")
        return (RuntimeApi.first_next - start) * 1000
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--binary", default="target/release/itsm-bridge")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as state:
        for name, extra in [("embedded store", {}), ("DynamoDB + Secrets Manager", AWS)]:
            env = dict(base_env(state), **extra)
            once(args.binary, env)  # warm the page cache
            ms = sorted(once(args.binary, env) for _ in range(args.runs))
            p90 = ms[int(0.9 * (len(ms) - 1))]
            print(f"{name}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
