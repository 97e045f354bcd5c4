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
# The WAF's Core Rule Set (waf.coreRuleSet) needs libmodsecurity, which the binary opens
# at run time, and the rules: Debian's packages, with the libraries libmodsecurity links
# that the runtime base lacks (each under its soname, links resolved), gathered into /waf
# to be copied whole.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libmodsecurity3 modsecurity-crs \
 && lib=$(dpkg -L libmodsecurity3 | grep 'libmodsecurity\.so\.3$') \
 && dir=/waf/usr/lib/$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH) \
 && mkdir -p "$dir" /waf/usr/share \
 && for f in "$lib" $(ldd "$lib" | awk '/=> \// {print $3}' \
      | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so'); do \
      cp -L "$f" "$dir/$(basename "$f")"; done \
 && cp -a /usr/share/modsecurity-crs /waf/usr/share/

# --- runtime: no shell, no package manager; uid/gid 65532 as the chart expects ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY --from=build /waf/ /
USER 65532:65532
# traffic, metrics/probes; the admin listener stays on 127.0.0.1:9901
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["--help"]
