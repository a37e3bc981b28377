# Sluice: one image with both binaries (the engine and the automation service),
# the shipped runbooks and alert rules.
#
#   docker build -t sluice .
#   docker run --rm -p 8080:8080 -p 8081:8081 sluice            # `sluice up`: embedded demo
#   docker run --rm sluice sluice-engine --config /etc/sluice/engine.yaml

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys.
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sluice --bin sluice-engine \
    && mkdir -p /out && cp target/release/sluice target/release/sluice-engine /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /out/sluice /out/sluice-engine /usr/local/bin/
COPY runbooks/ /etc/sluice/runbooks/
COPY alerts/ /etc/sluice/alerts/
COPY sluice.yaml engine.example.yaml /etc/sluice/
USER sluice
WORKDIR /var/lib/sluice
# 8080: engine admin API and metrics; 8081: Sluice API.
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sluice", "up", "--config", "/etc/sluice/sluice.yaml", "--data-dir", "/var/lib/sluice", \
     "--engine-listen", "0.0.0.0:8080", "--listen", "0.0.0.0:8081"]
