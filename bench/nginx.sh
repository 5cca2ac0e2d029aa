# Sourced by the benchmark scripts: nginx with one worker process serving a small JSON body
# (and its stub_status counters) on a free 127.0.0.1 port. Sets WORK (a temp dir, removed on
# exit), PORT and URL; nginx stops when the script exits.
WORK=$(mktemp -d /tmp/recordctl-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server {
    listen 127.0.0.1:$PORT;
    location / { default_type application/json; return 200 '{"status":"ok","service":"bench"}'; }
    location = /nginx_status { stub_status; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; wait $NGINX 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done
URL="http://127.0.0.1:$PORT/"
