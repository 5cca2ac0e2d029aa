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
#
# Usage: scripts/local-images.sh [--app path/to/recordstore]
# Needs root (debootstrap) and Debian's package mirror. Safe to run concurrently (flock).
set -euo pipefail
cd "$(dirname "$0")/.."
app_binary=""
if [ "${1:-}" = "--app" ]; then
  app_binary="${2:?--app needs the path of a recordstore binary}"
fi
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
echo "== local images ready" >&2
