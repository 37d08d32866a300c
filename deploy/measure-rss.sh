#!/bin/bash
# Memory and CPU of a sigv4-proxy binary, idle and under load, against a local nginx that
# answers every request with a small JSON body over TLS (HTTP/1.1) on loopback. Needs nginx,
# openssl, wrk, curl and python3 (Debian packages). Touches only 127.0.0.1; cleans up after itself.
#
#   cargo build --release && deploy/measure-rss.sh target/release/sigv4-proxy
set -eu
BIN=$(realpath "${1:?usage: deploy/measure-rss.sh PATH/TO/sigv4-proxy}")
HOST=search-rss.us-east-1.es.amazonaws.com
UP=18443 PROXY=19200 ADMIN=19901
DIR=$(mktemp -d)
NGINX_PID= PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

# A CA and a certificate for the endpoint's name, so the proxy verifies TLS as it would on AWS.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=rss CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj "/CN=$HOST" 2>/dev/null
printf "subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" "$HOST" > ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 \
    -extfile ext 2>/dev/null
cat > nginx.conf <<NGINX
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/body;
  client_max_body_size 10m;
  server {
    listen 127.0.0.1:$UP ssl;
    ssl_certificate $DIR/leaf.pem;
    ssl_certificate_key $DIR/leaf.key;
    location / { default_type application/json; return 200 '{"took":1,"hits":{"total":{"value":0}}}'; }
  }
}
NGINX
nginx -c "$DIR/nginx.conf" & NGINX_PID=$!

env -i PATH=/usr/bin:/bin HOME=/nonexistent AWS_EC2_METADATA_DISABLED=true \
    AWS_ACCESS_KEY_ID=AKIARSSTEST000000000 AWS_SECRET_ACCESS_KEY=rsstestsecret \
    "$BIN" --listen 127.0.0.1:$PROXY --admin-listen 127.0.0.1:$ADMIN \
    --connect-to 127.0.0.1:$UP --ca-bundle "$DIR/ca.pem" "https://$HOST" 2>"$DIR/proxy.log" &
PID=$!
for _ in $(seq 100); do curl -sf localhost:$ADMIN/healthz >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS|VmHWM/{printf "%s %s kB  ", $1, $2}' /proc/$PID/status; awk '{printf "cpu %.2f s\n", ($14+$15)/100}' /proc/$PID/stat; }
sleep 2
echo "== idle, after start"; rss
python3 - "$PROXY" <<'PY'
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
t = time.time()
for _ in range(10000):
    c.request("GET", "/logs/_search?q=level:error")
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
print("10000 sequential keep-alive GETs in %.1f s" % (time.time() - t))
PY
echo "== after 10k sequential requests"; rss
wrk -t2 -c50 -d10s "http://127.0.0.1:$PROXY/logs/_search?q=level:error" | grep -E "requests in|Requests/sec|Non-2xx"
echo "== after wrk -t2 -c50 -d10s GET"; rss
cat > post.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.body = string.rep("{\"index\":{}}\n{\"msg\":\"0123456789abcdef0123456789abcdef\"}\n", 10000)
LUA
wrk -t2 -c20 -d10s -s post.lua "http://127.0.0.1:$PROXY/logs/_bulk" | grep -E "requests in|Requests/sec|Non-2xx"
echo "== after wrk -t2 -c20 -d10s POST _bulk, 500 KB bodies (below the 1 MiB spill threshold)"; rss
sleep 15
echo "== idle again, 15 s later (freed memory is given back after 10 s idle)"; rss
