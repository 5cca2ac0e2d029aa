# The recordctl image, for load-test shards on a cluster (deploy/loadtest-shards.yaml).
#
#   docker build -f deploy/recordctl.Dockerfile -t recordctl:0.1.0 .      (from the repository root)
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin recordctl \
 && strip target/release/recordctl \
 && cp target/release/recordctl /recordctl

FROM ${RUNTIME_IMAGE}
RUN echo 'recordctl:x:10001:10001:recordctl:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'recordctl:x:10001:' >> /etc/group
COPY --from=build /recordctl /usr/local/bin/recordctl
COPY scenarios /scenarios
USER 10001:10001
ENTRYPOINT ["recordctl"]
