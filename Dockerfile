# Multi-stage build of the sessionbridge image: a static-enough binary on a
# distroless base, running as the image's non-root user. Run it with a
# read-only root filesystem; the only writable path it needs is the data
# directory (/var/lib/sessionbridge, an emptyDir or a volume).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin sessionbridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sessionbridge /usr/local/bin/sessionbridge
USER nonroot:nonroot
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/sessionbridge"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--insecure-listen", "true", "--data-dir", "/var/lib/sessionbridge"]
