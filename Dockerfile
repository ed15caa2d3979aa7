# syntax=docker/dockerfile:1
# Build stage: dependencies are compiled in their own layer, keyed on Cargo.toml/Cargo.lock only, so a
# source change rebuilds just the crate (polars and delta-rs take tens of minutes cold).
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY openapi ./openapi
COPY fixtures ./fixtures
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Runtime stage: the binary only, as an unprivileged user, data on a volume. CA certificates
# for HTTPS to S3 and the intensity providers.
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin carbon \
    && mkdir -p /data && chown 10001 /data
COPY --from=builder /build/target/release/carbon-ledger /usr/local/bin/carbon-ledger
USER 10001
ENV CARBON_LEDGER_BIND=0.0.0.0:8080 \
    CARBON_LEDGER_DATA_DIR=/data \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["carbon-ledger", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["carbon-ledger"]
CMD ["serve"]
