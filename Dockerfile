# syntax=docker/dockerfile:1
# The Gatehouse image: one binary, run as `gatehouse controller` and `gatehouse proxy`
# by the chart's two containers. `make image` builds it (needs a Docker engine).

# --- build: the same cargo command as the Makefile's RELEASE_BUILD (a chart test checks) ---
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release --locked -p gatehouse
# The binary links only libc, libm and libgcc_s (ldd): the distroless "cc" base has them.

# --- runtime: no shell, no package manager; uid/gid 65532 as the chart expects ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
USER 65532:65532
# traffic, metrics/probes; the admin listener stays on 127.0.0.1:9901
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["--help"]
