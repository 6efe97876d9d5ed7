# Multi-stage build: compile with the Rust image (plus protoc and the protobuf
# well-known types, libprotobuf-dev, for etcd-client: a recommend of
# protobuf-compiler, so --no-install-recommends would leave them out),
# run on a slim Debian as a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
# A workspace member: cargo reads its manifest even to build the server alone.
COPY clients/rust ./clients/rust
RUN cargo build --release --locked --bin etcd-cache-gateway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home gateway
COPY --from=build /src/target/release/etcd-cache-gateway /usr/local/bin/etcd-cache-gateway
COPY config/gateway.toml /etc/etcd-cache-gateway/gateway.toml
USER gateway
EXPOSE 8080
ENV GATEWAY_LISTEN=0.0.0.0:8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz >/dev/null || exit 1
ENTRYPOINT ["etcd-cache-gateway"]
CMD ["--config", "/etc/etcd-cache-gateway/gateway.toml"]
