# syntax=docker/dockerfile:1.7
# cellbank-global (the router tier) and cellctl (the ops CLI), from the repo root:
#   docker build -f infra/docker/global.Dockerfile -t cellbank-global:dev .
# The runtime image has no shell and no package manager: glibc, libgcc and the two
# binaries. librdkafka and zlib are linked statically.

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
    cargo build --release --locked -p cellbank-global --bin cellbank-global --bin cellctl \
 && install -D -m 0755 target/release/cellbank-global /out/cellbank-global \
 && install -D -m 0755 target/release/cellctl /out/cellctl

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /usr/local/bin/
# The same uid/gid the Kubernetes manifests run as (infra/k8s/base/global).
USER 10001:10001
# Two listeners: the public API and the ops API (its own port, reached by operators
# only). The public listener's default host is loopback, so bind all interfaces.
ENV CELLBANK__SERVER__HOST=0.0.0.0 \
    CELLBANK__SERVER__PORT=8080 \
    CELLBANK__OPS__HOST=0.0.0.0 \
    CELLBANK__OPS__PORT=8090
EXPOSE 8080 8090
ENTRYPOINT ["/usr/local/bin/cellbank-global"]
