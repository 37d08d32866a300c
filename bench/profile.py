#!/usr/bin/env python3
"""Instructions per request under callgrind: counts that do not depend on the machine's load,
for before/after comparisons of code changes (the wall-clock benchmark is bench/run.sh).

    python3 bench/profile.py [BINARY] [N]
    BENCH_PROXY_ARGS="--log-format json" python3 bench/profile.py   # extra proxy flags

Starts the nginx upstream of bench.py, runs the proxy under `valgrind --tool=callgrind`, sends
N sequential keep-alive GETs, then N 64 KiB search POSTs (one client, so the counts repeat),
and prints instructions per request for each and the functions that cost the most (inclusive).
The callgrind files stay in the printed directory for callgrind_annotate / kcachegrind.
"""

import http.client
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402


def requests(port, n, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(n):
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    conn.close()


def summary(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else bench.BINARY)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    import tempfile

    d = tempfile.mkdtemp(prefix="sigv4-proxy-profile-")
    os.chmod(d, 0o755)
    procs = []
    try:
        bench.make_certs(d)
        up_port, proxy_port = bench.free_port(pair=True), bench.free_port()
        conf = os.path.join(d, "upstream.conf")
        with open(conf, "w") as f:
            f.write(bench.upstream_conf(d, up_port))
        procs.append(bench.Proc("nginx", ["nginx", "-c", conf, "-p", d]))
        bench.wait_port(up_port)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": d,
            "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "bench/secret/key/that/is/not/real/0000000",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        }
        out = os.path.join(d, "callgrind.out")
        proxy = bench.Proc("proxy", [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
            "--listen", f"127.0.0.1:{proxy_port}", "--connect-to", f"127.0.0.1:{up_port}",
            "--ca-bundle", os.path.join(d, "bench-ca.pem"),
            *shlex.split(os.environ.get("BENCH_PROXY_ARGS", "")), f"https://{bench.HOST}",
        ], env=env, log_path=os.path.join(d, "proxy.log"))
        procs.append(proxy)
        bench.wait_port(proxy_port, timeout=120)
        pid = str(proxy.p.pid)
        post = bench.post_script(d)  # for the body only
        body = re.search(r"\[==\[(.*)\]==\]", open(post).read(), re.S).group(1).encode()
        requests(proxy_port, 20, "GET", "/_cluster/health")
        requests(proxy_port, 5, "POST", "/logs/_search", body)
        results = {}
        for label, method, path, data in (("GET", "GET", "/_cluster/health", None),
                                          ("POST 64 KiB", "POST", "/logs/_search", body)):
            subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
            requests(proxy_port, n, method, path, data)
            subprocess.run(["callgrind_control", "-d", label.replace(" ", "_"), pid],
                           check=True, capture_output=True)
            time.sleep(1)
            dumps = sorted((p for p in os.listdir(d) if p.startswith("callgrind.out.")),
                           key=lambda p: os.path.getmtime(os.path.join(d, p)))
            results[label] = os.path.join(d, dumps[-1])
        print(f"binary {binary}; {n} sequential requests each; load average {bench.loadavg()}")
        for label, path in results.items():
            print(f"{label:12} {summary(path) / n:12,.0f} instructions per request   ({path})")
        for label, path in results.items():
            print(f"\n== {label}: inclusive cost, top functions")
            ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", path],
                                 capture_output=True, text=True).stdout
            lines = [ln for ln in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", ln)]
            for ln in lines[:40]:
                print(ln[:200])
    finally:
        for p in reversed(procs):
            p.stop()
    print(f"\ncallgrind files in {d}")


if __name__ == "__main__":
    main()
