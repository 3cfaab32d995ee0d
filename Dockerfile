# syntax=docker/dockerfile:1
#
# The homeostat operator image:
#   docker build -t homeostat/homeostat:0.1.0 .
#
# The binary links glibc (and libgcc_s, libm) dynamically, so the runtime image is distroless
# "cc" (glibc + libgcc + CA certificates), not "static". It needs glibc >= 2.34; Debian 12 has 2.36.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- 1. The workspace's manifests and lockfile only, with stub targets -------------------------
# Whatever else changes, this stage's output has the same content (BuildKit hashes contents, not
# mtimes), so the dependency layer below is reused until a Cargo.toml or Cargo.lock changes
# (cargo-chef's trick without cargo-chef). New workspace members are picked up automatically.
FROM ${RUST_IMAGE} AS manifests
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN find . -type f ! -name Cargo.toml ! -name Cargo.lock -delete \
 && find . -mindepth 1 -type d -empty -delete \
 && find . -name Cargo.toml | while read -r m; do \
      d=$(dirname "$m"); mkdir -p "$d/src"; \
      echo 'fn main() {}' > "$d/src/main.rs"; : > "$d/src/lib.rs"; \
    done

# --- 2. Build ---------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies: compiled once per Cargo.lock, kept in this layer.
COPY --from=manifests /src ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --bin homeostat \
 && cargo clean --release -p homeostat
# The operator itself (nothing outside src/ goes into the binary).
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --bin homeostat \
 && strip target/release/homeostat \
 && ./target/release/homeostat --version

# --- 3. Runtime -------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="homeostat" \
      org.opencontainers.image.description="A Kubernetes operator that classifies workload faults from Prometheus and heals them" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=builder /src/target/release/homeostat /homeostat
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/homeostat"]
CMD ["run"]
