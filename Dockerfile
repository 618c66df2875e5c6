# Builds the deliver binary into a minimal image for the in-cluster reconciler
# and for CI steps. deliver needs no git, helm or kubectl binary at run time.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/deliverhq/deliver/internal/version.Version=${VERSION} -X github.com/deliverhq/deliver/internal/version.Commit=${COMMIT}" \
      -o /out/deliver ./cmd/deliver

FROM gcr.io/distroless/static-debian12:nonroot
# Read-only root filesystem friendly: the git cache and private temporary
# files go to /tmp (mount an emptyDir there); nothing else is written.
ENV XDG_CACHE_HOME=/tmp/cache TMPDIR=/tmp
COPY --from=build /out/deliver /usr/local/bin/deliver
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/deliver"]
