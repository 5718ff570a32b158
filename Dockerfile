# posthub: one static-ish binary (cgo, for libxml2) on a distroless base that
# has glibc and nothing else: no shell, no package manager, running as the
# unprivileged user "nonroot" (uid 65532).
#
#   docker build -t posthub .
#   docker run -p 8080:8080 -e POSTHUB_METADATA=mongo ... posthub
#
# Build and run stages are both Debian 12 (bookworm), so the shared
# libraries copied below are the ones the binary was linked against.

FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libxml2-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/posthub ./cmd/posthub
# libxml2 and its own dependencies (ICU, liblzma, zlib) into a directory of
# their own, found through LD_LIBRARY_PATH below; distroless/cc has glibc,
# libgcc and libstdc++.
RUN mkdir -p /out/root/opt/posthub/lib /out/root/home/nonroot/data \
 && ldd /out/posthub | awk '$3 ~ /^\// { print $3 }' \
    | grep -E 'libxml2|libicu|liblzma|libz\.so' \
    | xargs -r cp -L -t /out/root/opt/posthub/lib \
 && test -e /out/root/opt/posthub/lib/libxml2.so.2

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/root/opt/posthub /opt/posthub
COPY --from=build --chown=65532:65532 /out/root/home/nonroot/data /home/nonroot/data
COPY --from=build /out/posthub /usr/local/bin/posthub
USER nonroot
WORKDIR /home/nonroot
# The spool for uploads in flight (and, on the embedded default, the data).
ENV POSTHUB_DATA=/home/nonroot/data LD_LIBRARY_PATH=/opt/posthub/lib
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/posthub"]
CMD ["serve", "-addr", ":8080"]
