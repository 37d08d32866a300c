#!/usr/bin/env python3
"""Writes build/symbol-order.txt: the proxy's functions that start-up and requests execute,
hottest first, for the linker to lay out together (see build.rs).

    python3 bench/symbol_order.py [BINARY]          # default target/release/sigv4-proxy
    python3 bench/symbol_order.py --check [BINARY]  # how many listed functions BINARY has

Why: the kernel maps an executable's code in 64 KiB runs around each page a process touches
(fault-around), so code that start-up and the request path touch, scattered over 8 MB of text,
keeps most of the text resident. Laid out together it is a few hundred KiB of runs.

How: runs BINARY under `valgrind --tool=callgrind` against bench.py's nginx upstream, twice:
  1. credentials from the environment, an admin listener: start-up, small GETs, 64 KiB search
     POSTs, a 32 MiB bulk (spilled to disk), part of a large download, health, readiness and
     metrics, a SIGHUP reload;
  2. credentials from a profile file, JSON logs: start-up (the SDK's credential chain) and GETs.
Functions of the proxy's executable that ran are listed by the instructions they executed
themselves, run 1's first, then those `perf record` samples when run 1's workload runs natively
(ring's assembly variants for this CPU). Symbol names depend on the compiler version and the dependencies'
versions (not on the source of a function), so regenerate after a toolchain or Cargo.lock
update (and pin deploy/Dockerfile's RUST_VERSION to the toolchain); a stale list still links, it
only helps less (`--check` shows how much still matches and whether it was laid out together).
Needs valgrind and nginx (perf optional), like bench/profile.py; takes about half a minute.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402
import profile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "build", "symbol-order.txt")


def self_costs(path, binary):
    """Self cost (instructions) per function of `binary`'s object in a callgrind file."""
    names, objects, costs = {}, {}, {}
    ob = fn = None
    skip_call_cost = False
    base = os.path.basename(binary)
    with open(path) as f:
        for line in f:
            m = re.match(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                called, kind, ident, name = m.groups()
                table = objects if kind == "ob" else names
                if name is not None:
                    table[ident] = name
                if not called:
                    if kind == "ob":
                        ob = table[ident]
                    else:
                        fn = table[ident] if ob and os.path.basename(ob) == base else None
                continue
            if line.startswith("calls="):
                skip_call_cost = True  # the next cost line is the callee's, inclusive
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip_call_cost:
                    skip_call_cost = False
                elif fn is not None:
                    costs[fn] = costs.get(fn, 0) + int(line.split()[-1])
    # Unnamed code (addresses) cannot be ordered by name.
    return {n: c for n, c in costs.items() if not n.startswith("0x") and " " not in n}


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            while resp.read(1 << 20):
                pass
            return resp.status
    except urllib.error.HTTPError as err:  # an error status runs code worth listing too
        return err.code


def run(binary, d, up_port, env, args, workload, tool, name, own_pid=True):
    """Runs BINARY under `tool` (the command words before it) through `workload`; the admin
    listener takes the port after the proxy's. `own_pid`: the tool runs the proxy in its own
    process (valgrind does), so the workload may signal it."""
    port = bench.free_port(pair=True)
    proxy = bench.Proc("proxy", [
        *tool, binary,
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port + 1}",
        "--connect-to", f"127.0.0.1:{up_port}",
        "--ca-bundle", os.path.join(d, "bench-ca.pem"), *args, f"https://{bench.HOST}",
    ], env=env, log_path=os.path.join(d, f"proxy.{name}.log"))
    try:
        bench.wait_port(port, timeout=120)
        workload(d, port, proxy.p.pid if own_pid else None)
    finally:
        proxy.p.send_signal(signal.SIGTERM)
        try:
            proxy.p.wait(timeout=120)
        finally:
            proxy.stop()


def callgrind(binary, d, up_port, env, args, workload):
    out = os.path.join(d, f"callgrind.{workload.__name__}")
    tool = ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"]
    run(binary, d, up_port, env, args, workload, tool, workload.__name__)
    return out


def native_hot(binary, d, up_port, env):
    """Functions `perf record` samples in run 1's workload run natively: valgrind's emulated
    CPU makes ring pick other assembly variants (no SHA-NI, no VAES) than this CPU does."""
    data = os.path.join(d, "perf.data")
    tool = ["perf", "record", "-q", "-F", "20000", "-o", data, "--"]
    run(binary, d, up_port, env, [], requests_and_operations, tool, "perf", own_pid=False)
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-demangle", "--stdio", "-q", "--sort", "symbol",
         "--dsos", os.path.basename(binary)], capture_output=True, text=True).stdout
    return [m.group(1) for m in re.finditer(r"^\s*[\d.]+%\s+\[\.\]\s+(\S+)", report, re.M)]


def requests_and_operations(d, port, pid):
    body = re.search(r"\[==\[(.*)\]==\]", open(bench.post_script(d)).read(), re.S).group(1)
    profile.requests(port, 200, "GET", "/_cluster/health")
    profile.requests(port, 50, "POST", "/logs/_search", body.encode())
    with open(bench.bulk_file(d), "rb") as f:
        profile.requests(port, 1, "POST", "/_bulk", f.read())
    get(f"http://127.0.0.1:{port}/_snapshot/big", {"Range": "bytes=0-20000000"})
    admin = port + 1
    for path in ("/healthz", "/readyz", "/metrics"):
        get(f"http://127.0.0.1:{admin}{path}")
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        time.sleep(5)
    profile.requests(port, 20, "GET", "/_cluster/health")


def start_up_from_a_profile(d, port, pid):
    profile.requests(port, 20, "GET", "/_cluster/health")


def check(binary):
    """How much of the list `binary` has (a stale list, from another toolchain, matches less)."""
    listed = [ln.strip() for ln in open(OUTPUT) if ln.strip() and not ln.startswith("#")]
    nm = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True)
    if nm.returncode != 0 or not nm.stdout.strip():
        return f"symbol order: cannot read {binary}'s symbols (stripped?)"
    where = {}
    for fields in (ln.split() for ln in nm.stdout.splitlines()):
        if len(fields) == 4 and fields[2] in "tT":
            where[fields[3]] = (int(fields[0], 16), int(fields[1], 16))
    found = [where[s] for s in listed if s in where]
    if not found:
        return f"symbol order: none of {len(listed)} listed functions in the binary"
    # Laid out together, the listed functions span about their own size; scattered, the text.
    span = max(a + n for a, n in found) - min(a for a, _ in found)
    size = sum(n for _, n in found)
    return (f"symbol order: {len(found)} of {len(listed)} listed functions in the binary, "
            f"{size >> 10} KiB of code spread over {span >> 10} KiB")


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--check"]:
        return print(check(os.path.abspath(argv[1] if len(argv) > 1 else bench.BINARY)))
    binary = os.path.abspath(argv[0] if argv else bench.BINARY)
    d = tempfile.mkdtemp(prefix="sigv4-proxy-order-")
    os.chmod(d, 0o755)
    procs = []
    try:
        bench.make_certs(d)
        with open(os.path.join(d, "big.bin"), "wb") as f:
            f.truncate(bench.STREAM_BYTES)
        os.chmod(os.path.join(d, "big.bin"), 0o644)
        up_port = bench.free_port(pair=True)
        conf = os.path.join(d, "upstream.conf")
        with open(conf, "w") as f:
            f.write(bench.upstream_conf(d, up_port))
        procs.append(bench.Proc("nginx", ["nginx", "-c", conf, "-p", d]))
        bench.wait_port(up_port)
        base = {"PATH": os.environ.get("PATH", ""), "HOME": d,
                "AWS_EC2_METADATA_DISABLED": "true"}
        env = dict(base, AWS_ACCESS_KEY_ID="AKIDBENCHEXAMPLE",
                   AWS_SECRET_ACCESS_KEY="bench/secret/key/that/is/not/real/0000000",
                   AWS_CONFIG_FILE="/nonexistent/config",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials")
        creds = os.path.join(d, "credentials")
        with open(creds, "w") as f:
            f.write("[default]\naws_access_key_id = AKIDBENCHEXAMPLE\n"
                    "aws_secret_access_key = bench/secret/key/that/is/not/real/0000000\n")
        from_profile = dict(base, AWS_CONFIG_FILE="/nonexistent/config",
                            AWS_SHARED_CREDENTIALS_FILE=creds)
        runs = [(env, [], requests_and_operations),
                (from_profile, ["--log-format", "json"], start_up_from_a_profile)]
        order, seen = [], set()
        for run_env, args, workload in runs:
            path = callgrind(binary, d, up_port, run_env, args, workload)
            costs = self_costs(path, binary)
            for name in sorted(costs, key=lambda n: (-costs[n], n)):
                if name not in seen:
                    seen.add(name)
                    order.append(name)
            print(f"{workload.__name__}: {len(costs)} functions", file=sys.stderr)
            if workload is requests_and_operations and shutil.which("perf"):
                native = [n for n in native_hot(binary, d, up_port, run_env) if n not in seen]
                seen.update(native)
                order.extend(native)
                print(f"natively sampled, not under valgrind: {native}", file=sys.stderr)
    finally:
        for p in reversed(procs):
            p.stop()
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    version = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    with open(OUTPUT, "w") as f:
        f.write("# Generated by bench/symbol_order.py (see there and build.rs); do not edit.\n")
        f.write(f"# {version}; {len(order)} functions, hottest first.\n")
        f.write("\n".join(order) + "\n")
    print(f"wrote {len(order)} functions to {OUTPUT}")
    print(check(binary))


if __name__ == "__main__":
    main()
