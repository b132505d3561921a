# syntax=docker/dockerfile:1.7
# cellbank-shard (one cell's service set) and cellbank-exporter (the cell's
# analytical export, the same release), from the repo root:
#   docker build -f infra/docker/shard.Dockerfile -t cellbank-shard:dev .
# The runtime image has no shell and no package manager: glibc, libgcc and the two
# binaries. librdkafka and zlib are linked statically. The image runs the shard; the
# exporter's Deployment names its binary as the command.

FROM rust:1.95.0-slim-bookworm AS builder
# rdkafka's bundled build runs librdkafka's own configure + make (no cmake).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
# Use the image's toolchain (same version as rust-toolchain.toml) without adding components.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cellbank-shard -p cellbank-exporter --bin cellbank-shard --bin cellbank-exporter \
 && install -D -m 0755 target/release/cellbank-shard /out/cellbank-shard \
 && install -D -m 0755 target/release/cellbank-exporter /out/cellbank-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /usr/local/bin/
# The same uid/gid the Kubernetes manifests run as (infra/k8s/base/shard).
USER 10001:10001
# One port per container; the binary's default host is loopback, so bind all interfaces.
# (The exporter's manifests set its own port, 8083; both binaries know these keys.)
ENV CELLBANK__SERVER__HOST=0.0.0.0 \
    CELLBANK__SERVER__PORT=8081
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/cellbank-shard"]
