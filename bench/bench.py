#!/usr/bin/env python3
"""The sigv4-proxy benchmark driver (run it through bench/run.sh).

Upstream: Debian's nginx on loopback with TLS (a throw-away CA and a certificate for
search-bench-x.us-east-1.es.amazonaws.com), one worker. nginx cannot check SigV4, so it just
answers: a small JSON document for GETs, a search answer for POSTs (after reading the body), a
bulk answer for _bulk, and a 500 MB file for the streaming test. That keeps the upstream cheap
and identical for every contender, so the ratios show what each hop costs.

Contenders, run one after the other inside each round (the order alternates between rounds):
  direct  the client talks TLS to nginx itself
  proxy   the client talks plain HTTP to sigv4-proxy, which signs and forwards over TLS
  nginx   (reference) the client talks plain HTTP to a second nginx (proxy_pass, keep-alive
          pool, 2 workers), which forwards over TLS and signs nothing

Load: wrk (2 threads, 32 connections) for small GETs and 64 KiB search POSTs; curl for 32 MiB
_bulk requests (one at a time) and the 500 MB download. Memory: the proxy's VmRSS/VmHWM from
/proc; the peak is reset (clear_refs 5) before each memory phase. Load average is printed with
every result: on a shared machine, read the ratios, not the absolute numbers.

Environment knobs: BENCH_SECONDS (per wrk run, default 8), BENCH_ROUNDS (default 3),
BENCH_UPSTREAM_H2 (0: nginx offers only http/1.1), BENCH_BINARY, BENCH_NO_REFERENCE (skip the
nginx reference), BENCH_KEEP (keep the work directory), BENCH_PROXY_ARGS (extra proxy flags),
BENCH_ONLY (comma-separated subset of get,post,bulk,stream; a quick look prints no table).
"""

import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "search-bench-x.us-east-1.es.amazonaws.com"
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = 32
THREADS = 2
BINARY = os.path.abspath(os.environ.get("BENCH_BINARY", "target/release/sigv4-proxy"))
UPSTREAM_H2 = os.environ.get("BENCH_UPSTREAM_H2", "1") != "0"
REFERENCE = not os.environ.get("BENCH_NO_REFERENCE")
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "get,post,bulk,stream").split(",")))
BULK_BYTES = 32 << 20
POST_BYTES = 64 << 10
STREAM_BYTES = 500_000_000

MiB = 1 << 20


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port(pair=False):
    """A free port (and, with `pair`, the one after it free too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair or port >= 65535:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise SystemExit("no free port pair")


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# --------------------------------------------------------------------------- setup


def make_certs(d):
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write(
            f"subjectAltName=DNS:{HOST},IP:127.0.0.1\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
    p = lambda n: os.path.join(d, n)  # noqa: E731
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
         "-keyout", p("ca.key"), "-out", p("bench-ca.pem"), "-subj", "/CN=sigv4-proxy bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("leaf.key"),
         "-out", p("leaf.csr"), "-subj", f"/CN={HOST}"])
    run(["openssl", "x509", "-req", "-in", p("leaf.csr"), "-CA", p("bench-ca.pem"),
         "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "7", "-out", p("leaf.pem"),
         "-extfile", ext])


SMALL_JSON = ('{"cluster_name":"123456789012:bench","status":"green","timed_out":false,'
              '"number_of_nodes":3,"number_of_data_nodes":3,"active_primary_shards":10,'
              '"active_shards":20,"relocating_shards":0,"initializing_shards":0}')
SEARCH_JSON = ('{"took":3,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,'
               '"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,'
               '"hits":[]}}')
BULK_JSON = '{"took":30,"errors":false,"items":[]}'


def nginx_common(d, name):
    t = os.path.join(d, name)
    os.makedirs(t, exist_ok=True)
    return f"""
pid {t}/nginx.pid;
error_log {t}/error.log warn;
daemon off;
events {{ worker_connections 8192; }}
"""


def nginx_temp(d, name):
    t = os.path.join(d, name)
    return " ".join(f"{k}_temp_path {t}/{k};" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def upstream_conf(d, port):
    h2 = " http2" if UPSTREAM_H2 else ""
    return nginx_common(d, "upstream") + f"""
worker_processes 1;
http {{
  {nginx_temp(d, "upstream")}
  access_log off;
  client_max_body_size 200m;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  sendfile on;
  upstream answers {{ server 127.0.0.1:{port + 1}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} ssl{h2};
    server_name {HOST};
    ssl_certificate {d}/leaf.pem;
    ssl_certificate_key {d}/leaf.key;
    ssl_session_cache shared:SSL:1m;
    default_type application/json;
    location = /_cluster/health {{ return 200 '{SMALL_JSON}'; }}
    # Searches and bulks read the whole body before answering, as OpenSearch does. A bare
    # `return` answers first: over HTTP/2 nginx then resets the upload and, every few such
    # requests, closes the connection with GOAWAY (measured: one in nine 64 KiB POSTs), which
    # no real endpoint does. proxy_pass buffers the request body, then asks the internal
    # server below over a kept-alive connection.
    location = /logs/_search {{
      client_body_buffer_size 128k;
      proxy_pass http://answers/search-answer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location = /_bulk {{
      client_body_buffer_size 40m;
      proxy_pass http://answers/bulk-answer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location = /_snapshot/big {{ default_type application/octet-stream; alias {d}/big.bin; }}
  }}
  server {{
    listen 127.0.0.1:{port + 1};
    location = /bulk-answer {{ default_type application/json; return 200 '{BULK_JSON}'; }}
    location = /search-answer {{ default_type application/json; return 200 '{SEARCH_JSON}'; }}
  }}
}}
"""


def reference_conf(d, port, upstream_port):
    return nginx_common(d, "reference") + f"""
worker_processes 2;
http {{
  {nginx_temp(d, "reference")}
  access_log off;
  client_max_body_size 200m;
  client_body_buffer_size 128k;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream endpoint {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass https://endpoint;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host {HOST};
      proxy_ssl_server_name on;
      proxy_ssl_name {HOST};
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"""


class Proc:
    def __init__(self, name, cmd, env=None, log_path=None):
        self.name = name
        out = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.p = subprocess.Popen(cmd, env=env, stdout=out, stderr=out,
                                  start_new_session=True)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_seconds(pid):
    """The CPU time of the process's threads alive now, in nanoseconds from the scheduler
    (schedstat): precise over a short run, unlike the clock ticks of /proc/PID/stat. Threads
    that exit in between are not counted, so it is used only around single requests."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------- load


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {}
    for pct, num, unit in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[pct] = float(num) * UNITS[unit]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "errors": errors}


def wrk(url, script=None, seconds=SECONDS):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    return parse_wrk(run(cmd).stdout)


def post_script(d):
    clause = '{"match":{"message":{"query":"connection refused timeout","operator":"or"}}},'
    head, tail = '{"size":10,"query":{"bool":{"should":[', '{"match_all":{}}]}}}'
    n = (POST_BYTES - len(head) - len(tail)) // len(clause)
    body = head + clause * n + tail
    body = body[:-1] + " " * (POST_BYTES - len(body)) + "}"
    assert len(body) == POST_BYTES
    path = os.path.join(d, "post.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f"wrk.body = [==[{body}]==]\n")
    return path


def bulk_file(d):
    path = os.path.join(d, "bulk.ndjson")
    with open(path, "w") as f:
        written, i = 0, 0
        while written < BULK_BYTES:
            line = ('{"index":{"_index":"logs-2026.11.23","_id":"%d"}}\n'
                    '{"@timestamp":"2026-11-23T01:%02d:%02dZ","level":"info","service":"checkout",'
                    '"message":"request %d served in %d ms","bytes":%d}\n'
                    % (i, i // 60 % 60, i % 60, i, i % 997, i * 7 % 65536))
            line = line[: BULK_BYTES - written]
            f.write(line)
            written += len(line)
            i += 1
    return path


# --------------------------------------------------------------------------- report


def fmt_ratio(values):
    return f"{statistics.median(values):.2f}x" if values else "-"


def main():
    if not os.path.exists(BINARY):
        raise SystemExit(f"{BINARY} not found: build with `cargo build --release`")
    d = tempfile.mkdtemp(prefix="sigv4-proxy-bench-")
    os.chmod(d, 0o755)  # nginx workers run as nobody: they read big.bin and write temp files here
    procs = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return bench(d, procs)
    finally:
        for p in reversed(procs):
            p.stop()
        if os.environ.get("BENCH_KEEP"):
            log(f"work directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def bench(d, procs):
    log(f"work directory {d}; load average {loadavg()}")
    import symbol_order  # here: it imports this module
    log(symbol_order.check(BINARY))
    make_certs(d)
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.truncate(STREAM_BYTES)  # sparse: costs no disk
    os.chmod(os.path.join(d, "big.bin"), 0o644)
    script = post_script(d)
    bulk = bulk_file(d)
    ca = os.path.join(d, "bench-ca.pem")

    up_port, proxy_port, ref_port = free_port(pair=True), free_port(), free_port()
    conf = os.path.join(d, "upstream.conf")
    with open(conf, "w") as f:
        f.write(upstream_conf(d, up_port))
    procs.append(Proc("nginx", ["nginx", "-c", conf, "-p", d], log_path=os.path.join(d, "nginx.out")))
    wait_port(up_port)
    if REFERENCE:
        rconf = os.path.join(d, "reference.conf")
        with open(rconf, "w") as f:
            f.write(reference_conf(d, ref_port, up_port))
        procs.append(Proc("nginx-ref", ["nginx", "-c", rconf, "-p", d], log_path=os.path.join(d, "ref.out")))
        wait_port(ref_port)

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": d,
        "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "bench/secret/key/that/is/not/real/0000000",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    }
    for k in ("MALLOC_ARENA_MAX", "RUST_LOG", "TOKIO_WORKER_THREADS"):
        if k in os.environ:
            env[k] = os.environ[k]
    proxy_cmd = [BINARY, "--listen", f"127.0.0.1:{proxy_port}", "--connect-to", f"127.0.0.1:{up_port}",
                 "--ca-bundle", ca, *shlex.split(os.environ.get("BENCH_PROXY_ARGS", "")),
                 f"https://{HOST}"]
    proxy = Proc("proxy", proxy_cmd, env=env, log_path=os.path.join(d, "proxy.log"))
    procs.append(proxy)
    wait_port(proxy_port)
    pid = proxy.p.pid
    time.sleep(1.0)
    idle_start = status(pid)["VmRSS"]
    fds_start = fd_count(pid)

    urls = {
        "direct": f"https://127.0.0.1:{up_port}",
        "proxy": f"http://127.0.0.1:{proxy_port}",
    }
    if REFERENCE:
        urls["nginx"] = f"http://127.0.0.1:{ref_port}"
    names = list(urls)

    def order(r):
        return names if r % 2 == 0 else names[::-1]

    results = {}
    proxy_cpu = {}

    bulk_runs, stream, bulk_peak, stream_peak, bulk_load, stream_load, reset_ok = {}, {}, 0, 0, '-', '-', True
    if "bulk" in ONLY:
        # 32 MiB bulks, one at a time; the proxy's peak RSS over them.
        # Memory first, on the fresh process: four (or more) sequential bulks, then the download.
        reset_ok = reset_peak(pid)
        bulk_runs = {n: [] for n in names}
        bulk_cpu = []
        for r in range(max(4, ROUNDS + 1)):
            for n in order(r):
                url = urls[n].replace("127.0.0.1", HOST) if n == "direct" else urls[n]
                extra = ["--resolve", f"{HOST}:{up_port}:127.0.0.1"] if n == "direct" else []
                before = run_seconds(pid)
                t = curl_resolve(url + "/_bulk", ca, extra, data=bulk)
                if n == "proxy":
                    bulk_cpu.append((run_seconds(pid) - before) * 1e3)
                bulk_runs[n].append(BULK_BYTES / MiB / t)
            log(f"bulk         round {r + 1} " + "  ".join(f"{n} {bulk_runs[n][-1]:.0f} MB/s" for n in names)
                + f"  load {loadavg()}")
        bulk_peak = status(pid)["VmHWM"]
        bulk_load = loadavg()

    if "stream" in ONLY:
        # A 500 MB streamed response.
        reset_peak(pid)
        stream = {}
        for n in ("direct", "proxy"):
            url = urls[n].replace("127.0.0.1", HOST) if n == "direct" else urls[n]
            extra = ["--resolve", f"{HOST}:{up_port}:127.0.0.1"] if n == "direct" else []
            t = curl_resolve(url + "/_snapshot/big", ca, extra)
            stream[n] = STREAM_BYTES / 1e6 / t
        stream_peak = status(pid)["VmHWM"]
        stream_load = loadavg()


    # Warm up every path (TLS handshakes, pools).
    for n in names:
        wrk(urls[n] + "/_cluster/health", seconds=1)

    for key, label, path, scr in (("get", "GET", "/_cluster/health", None),
                                  ("post", "POST 64 KiB", "/logs/_search", script)):
        if key not in ONLY:
            continue
        runs = {n: [] for n in names}
        cpu = []
        for r in range(ROUNDS):
            for n in order(r):
                before = cpu_seconds(pid)
                res = wrk(urls[n] + path, scr)
                res["load"] = loadavg()
                if n == "proxy":
                    cpu.append((cpu_seconds(pid) - before) / max(1, res["rps"] * SECONDS) * 1e6)
                runs[n].append(res)
                log(f"{label:12} round {r + 1} {n:7} {res['rps']:9.0f} req/s  p50 {res['p50']:.2f} ms  "
                    f"p99 {res['p99']:.2f} ms  errors {res['errors']}  load {res['load']}")
        results[label] = runs
        proxy_cpu[label] = statistics.median(cpu)

    time.sleep(2)
    idle_end = status(pid)["VmRSS"]
    fds_end = fd_count(pid)
    # Once idle for 10 s the proxy gives freed heap memory back (src/memory.rs).
    time.sleep(13)
    idle_later = status(pid)["VmRSS"]

    # ------------------------------------------------------------------ table
    def med(n, label, key):
        return statistics.median(x[key] for x in results[label][n])

    def ratios(label, key, n="proxy"):
        return [p[key] / d_[key] for p, d_ in zip(results[label][n], results[label]["direct"])]

    rows = []
    for label in results:
        line = [f"{label} req/s", f"{med('direct', label, 'rps'):.0f}", f"{med('proxy', label, 'rps'):.0f}",
                fmt_ratio(ratios(label, "rps"))]
        if REFERENCE:
            line += [f"{med('nginx', label, 'rps'):.0f}", fmt_ratio(ratios(label, "rps", "nginx"))]
        rows.append(line)
        for pct in ("p50", "p99"):
            line = [f"{label} {pct} ms", f"{med('direct', label, pct):.2f}", f"{med('proxy', label, pct):.2f}",
                    f"{med('proxy', label, pct) - med('direct', label, pct):+.2f} ms"]
            if REFERENCE:
                line += [f"{med('nginx', label, pct):.2f}",
                         f"{med('nginx', label, pct) - med('direct', label, pct):+.2f} ms"]
            rows.append(line)
    if bulk_runs:
        line = ["32 MiB _bulk MB/s", f"{statistics.median(bulk_runs['direct']):.0f}",
                f"{statistics.median(bulk_runs['proxy']):.0f}",
                fmt_ratio([p / q for p, q in zip(bulk_runs["proxy"], bulk_runs["direct"])])]
        if REFERENCE:
            line += [f"{statistics.median(bulk_runs['nginx']):.0f}",
                     fmt_ratio([p / q for p, q in zip(bulk_runs["nginx"], bulk_runs["direct"])])]
        rows.append(line)
    if stream:
        rows.append(["500 MB response MB/s", f"{stream['direct']:.0f}", f"{stream['proxy']:.0f}",
                     f"{stream['proxy'] / stream['direct']:.2f}x"] + (["", ""] if REFERENCE else []))

    header = ["workload", "direct", "sigv4-proxy", "proxy/direct"] + (["nginx proxy", "nginx/direct"] if REFERENCE else [])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def pr(r):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")

    print()
    print(f"sigv4-proxy benchmark: {os.cpu_count()} CPUs, upstream nginx {'h2+http/1.1' if UPSTREAM_H2 else 'http/1.1'}, "
          f"wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s x {ROUNDS} rounds (medians; ratios are medians of per-round ratios)")
    print()
    pr(header)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        pr(r)
    print()
    mb = lambda b: f"{b / MiB:.1f} MiB"  # noqa: E731
    print("| proxy memory and CPU | value |")
    print("|---|---|")
    print(f"| idle RSS after start | {mb(idle_start)} |")
    print(f"| idle RSS 2 s after the run | {mb(idle_end)} |")
    print(f"| idle RSS 15 s after the run | {mb(idle_later)} |")
    if bulk_runs:
        print(f"| peak RSS over {len(bulk_runs['proxy'])} sequential 32 MiB bulks (fresh process) | {mb(bulk_peak)}"
              f"{'' if reset_ok else ' (process peak: clear_refs not permitted)'} (load {bulk_load}) |")
    if stream:
        print(f"| peak RSS while streaming 500 MB | {mb(stream_peak)} (load {stream_load}) |")
    if bulk_runs:
        print(f"| proxy CPU per 32 MiB bulk (median of {len(bulk_cpu)}, from schedstat) | {statistics.median(bulk_cpu):.1f} ms |")
    for label, cpu in proxy_cpu.items():
        print(f"| proxy CPU per {label} request (user+sys) | {cpu:.0f} µs |")
    print(f"| open fds start / end | {fds_start} / {fds_end} |")
    print()
    print(f"load average at the end: {loadavg()}")
    errors = sum(x["errors"] for label in results for n in names for x in results[label][n])
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors; see the log above")
        return 1
    return 0


def curl_resolve(url, ca, extra, data=None):
    cmd = ["curl", "-sS", "--http1.1", "--max-time", "300", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
           "-H", "Expect:"] + extra
    if url.startswith("https://"):
        cmd += ["--cacert", ca]
    if data:
        cmd += ["-H", "Content-Type: application/x-ndjson", "--data-binary", "@" + data]
    code, total = run(cmd + [url]).stdout.split()
    if code != "200":
        raise SystemExit(f"{url}: HTTP {code}")
    return float(total)


if __name__ == "__main__":
    sys.exit(main())
