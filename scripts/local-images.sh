#!/usr/bin/env bash
# Builds, from Debian's packages, the images the Docker tests use, since no container registry
# is reachable on the project's machines. Each base is made once per machine and reused:
#
#   recordstore-local/debian:bookworm    debootstrap minbase (+ ca-certificates)
#   recordstore-local/postgres:15        the same plus postgresql-15, entrypoint docker/postgres-entrypoint.sh
#   recordstore-local/nettools:bookworm  the same plus iproute2 and iptables: the network-fault
#                                        helper the drill tests use (`--network-helper-image`)
#   recordstore:local                    app/Dockerfile --target prebuilt on the local base
#                                        (only with --app BINARY; rebuilt each time, layers cached)
#   recordstore-local/stack:bookworm     the local base plus this machine's Debian-packaged
#                                        Prometheus, Alertmanager, blackbox exporter, Pushgateway
#                                        and postgres exporter, and the recordstore-fixtures
#                                        stand-ins for Loki, Jaeger and the log shipper; `wget`
#                                        and `loki -health` answer the compose file's
#                                        healthchecks (only with --stack FIXTURES_BINARY; for
#                                        docker/compose.local.yaml)
#
# Usage: scripts/local-images.sh [--app path/to/recordstore] [--stack path/to/recordstore-fixtures]
# Needs root (debootstrap) and Debian's package mirror. Safe to run concurrently (flock).
set -euo pipefail
cd "$(dirname "$0")/.."
app_binary=""
fixtures_binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app_binary="${2:?--app needs the path of a recordstore binary}"; shift 2 ;;
    --stack) fixtures_binary="${2:?--stack needs the path of a recordstore-fixtures binary}"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
exec 9>"${TMPDIR:-/tmp}/recordstore-local-images.lock"
flock 9

have() { docker image inspect "$1" >/dev/null 2>&1; }

import_rootfs() { # name, extra debootstrap packages, --change args...
  local name="$1" include="$2"; shift 2
  local root
  root="$(mktemp -d "${TMPDIR:-/tmp}/recordstore-rootfs.XXXXXX")"
  echo "== debootstrap $name (include: $include)" >&2
  if ! debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    echo "debootstrap failed for $name (see above); is $mirror reachable?" >&2
    exit 1
  fi
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
    "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/lib/postgresql/15/main
  tar -C "$root" -c . | docker import "$@" - "$name" >/dev/null
  rm -rf "$root" "$root.log"
}

if ! have recordstore-local/debian:bookworm; then
  import_rootfs recordstore-local/debian:bookworm ca-certificates \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]'
fi

if ! have recordstore-local/postgres:15; then
  import_rootfs recordstore-local/postgres-base:15 postgresql-15 \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  ctx="$(mktemp -d)"
  cp docker/postgres-entrypoint.sh "$ctx/entrypoint.sh"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM recordstore-local/postgres-base:15
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 0755 /usr/local/bin/postgres-entrypoint && mkdir -p /var/lib/postgresql/data && chown -R postgres:postgres /var/lib/postgresql
ENV PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=2s --timeout=3s --retries=15 CMD ["pg_isready", "-h", "127.0.0.1", "-q"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
DOCKERFILE
  docker build -q -t recordstore-local/postgres:15 "$ctx" >/dev/null
  rm -rf "$ctx"
fi

if ! have recordstore-local/nettools:bookworm; then
  import_rootfs recordstore-local/nettools:bookworm iproute2,iptables \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]'
fi

if [ -n "$app_binary" ]; then
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/target/release"
  # Debug symbols are not needed in the image.
  objcopy --strip-debug "$app_binary" "$ctx/target/release/recordstore"
  docker build -q -f app/Dockerfile --target prebuilt \
    --build-arg RUNTIME_IMAGE=recordstore-local/debian:bookworm \
    --label org.recordstore.local=app \
    -t recordstore:local "$ctx" >/dev/null
  rm -rf "$ctx"
  # The previous build, now untagged, is of no use.
  docker image prune -f --filter label=org.recordstore.local=app >/dev/null
fi
if [ -n "$fixtures_binary" ]; then
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/bin"
  for tool in prometheus prometheus-alertmanager prometheus-blackbox-exporter prometheus-pushgateway prometheus-postgres-exporter; do
    if [ ! -x "/usr/bin/$tool" ]; then
      echo "/usr/bin/$tool is missing: apt-get install $tool (scripts/test installs it)" >&2
      exit 1
    fi
    cp "/usr/bin/$tool" "$ctx/bin/"
  done
  # Alertmanager's templates (it will not start without default.tmpl), the Pushgateway's page.
  mkdir -p "$ctx/share"
  tar -C /usr/share -chf - prometheus/alertmanager prometheus/pushgateway 2>/dev/null | tar -C "$ctx/share" -xf -
  objcopy --strip-debug "$fixtures_binary" "$ctx/bin/recordstore-fixtures"
  # The official images' healthchecks call wget and `loki -health`: answer them.
  printf '#!/bin/sh\n# wget -q -O /dev/null URL, as the compose healthchecks call it\nfor a; do url="$a"; done\nexec recordstore-fixtures health "$url"\n' >"$ctx/bin/wget"
  printf '#!/bin/sh\n# loki -health, as the compose healthcheck calls it\nexec recordstore-fixtures health http://127.0.0.1:3100/ready\n' >"$ctx/bin/loki"
  chmod 0755 "$ctx/bin/wget" "$ctx/bin/loki"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM recordstore-local/debian:bookworm
COPY bin/ /usr/local/bin/
COPY bin/loki /usr/bin/loki
COPY share/ /usr/share/
DOCKERFILE
  docker build -q --label org.recordstore.local=stack -t recordstore-local/stack:bookworm "$ctx" >/dev/null
  rm -rf "$ctx"
  docker image prune -f --filter label=org.recordstore.local=stack >/dev/null
fi
echo "== local images ready" >&2
