# weir container image: a static-enough release binary on a small Debian base.
#   docker build -t weir:0.1.0 .
#   docker run -p 24224:24224 -p 24224:24224/udp -p 24231:24231 -v weir-data:/var/lib/weir weir:0.1.0
# With no config mounted it runs docker/weir.toml (listen on every interface,
# files under the volume); mount yours at /etc/weir/weir.toml to replace it.
# tests/e2e/operator.rs runs this file's ENTRYPOINT and CMD as written.
# The Helm chart (helm/weir) runs it as a StatefulSet; see its README.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild the arrow/parquet stack.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in decode wal_append parquet_encode end_to_end s3_upload; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin weir

FROM debian:bookworm-slim
# CA roots for TLS to S3, GCS and Treasure Data.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY docker/weir.toml /etc/weir/weir.toml
# Non-root; the chart also sets a read-only root filesystem. State lives
# under /var/lib/weir (a volume), config under /etc/weir.
RUN mkdir -p /var/lib/weir /etc/weir && chown 65532:65532 /var/lib/weir
USER 65532:65532
WORKDIR /var/lib/weir
ENV WEIR_LOG_FORMAT=json
EXPOSE 24224/tcp 24224/udp 24231/tcp
VOLUME ["/var/lib/weir"]
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["serve", "-c", "/etc/weir/weir.toml"]
