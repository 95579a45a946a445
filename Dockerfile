# The airlock CLI and its connector plugins in a minimal image.
#
#   docker build -t airlock .
#   docker run --rm --read-only --tmpfs /tmp \
#       -v airlock-home:/var/lib/airlock airlock demo
#
# The final image has no shell and no package manager; it runs as the distroless `nonroot`
# user (uid 65532) and writes only to the /var/lib/airlock volume (state store, embedded
# vault, spool, component cache), so the root file system can be mounted read-only.

# --- build: the host in release mode and every plugin for wasm32-wasip2 ---
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p airlock-host --bin airlock \
 && ./scripts/build-plugins \
 && mkdir -p /out/plugins /out/home \
 && cp target/release/airlock /out/airlock \
 && cp target/plugins/sqlite.wasm target/plugins/postgres.wasm \
       target/plugins/mysql.wasm target/plugins/glue.wasm /out/plugins/

# --- run: glibc and libgcc only, no shell ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/airlock /usr/local/bin/airlock
COPY --from=build /out/plugins/ /usr/local/lib/airlock/plugins/
# An empty home owned by the runtime user: a new named volume takes over its ownership.
COPY --from=build --chown=65532:65532 /out/home /var/lib/airlock
ENV AIRLOCK_HOME=/var/lib/airlock \
    AIRLOCK_PLUGIN_DIR=/usr/local/lib/airlock/plugins \
    AIRLOCK_CACHE_DIR=/var/lib/airlock/cache
USER nonroot:nonroot
WORKDIR /var/lib/airlock
VOLUME ["/var/lib/airlock"]
ENTRYPOINT ["/usr/local/bin/airlock"]
CMD ["--help"]
