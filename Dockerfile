# syntax=docker/dockerfile:1
# Multi-stage build: static binaries (CGO disabled, the same flags as
# "make build"), one minimal non-root image per binary.
#
#   docker build --target operator -t ghcr.io/portico-lb/operator:$VERSION  --build-arg VERSION=$VERSION .
#   docker build --target forwarder -t ghcr.io/portico-lb/forwarder:$VERSION --build-arg VERSION=$VERSION .
#   docker build --target kubectl-lb -t ghcr.io/portico-lb/kubectl-lb:$VERSION --build-arg VERSION=$VERSION .
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/portico-lb/portico/internal/version.Version=${VERSION}" \
      -o /out/ ./cmd/portico-operator ./cmd/portico-forwarder ./cmd/kubectl-lb

FROM scratch AS base
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532

FROM base AS operator
COPY --from=build /out/portico-operator /portico-operator
ENTRYPOINT ["/portico-operator"]

# The forwarder programs nftables through the nft binary (sigs.k8s.io/knftables),
# so its image carries nftables; it runs with only NET_ADMIN and NET_RAW
# (granted by the DaemonSet) and a read-only root filesystem.
FROM debian:bookworm-slim AS forwarder
RUN apt-get update && apt-get install -y --no-install-recommends nftables && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/portico-forwarder /portico-forwarder
ENTRYPOINT ["/portico-forwarder"]

FROM base AS kubectl-lb
COPY --from=build /out/kubectl-lb /kubectl-lb
ENTRYPOINT ["/kubectl-lb"]
