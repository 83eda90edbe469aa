# syntax=docker/dockerfile:1
#
# The jobrun image: one image for `jobrun server` and `jobrun agent`.
#
#   docker build -t jobrun .                  (or podman build)
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t jobrun .
#
# Two stages. The build stage runs `make build` (cgo, -tags seccomp) and
# everything it puts in bin/ goes to /usr/local/bin: jobrun, and next to it
# (where jobrun finds them) jobrun-launcher, the static PID 1 of every job
# container, and jobrun-starter, which starts the containers. The runtime stage is Debian with only what jobrun
# loads at run time: libseccomp2 (the seccomp filter) and ca-certificates
# (registries, S3, PostgreSQL over TLS). Git is not needed: jobrun uses
# go-git.
#
# The base images are build arguments so that a build from locally made
# images works too (examples/deploy/deploy_test.go builds with Debian roots
# made by scripts/testimages.sh and no registry). Modules come from GOPROXY
# (a build argument, Go's default when unset).

ARG BUILD_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# What `make build` needs besides Go, by the script it runs first
# (scripts/deps.sh build); the golang images lack only libseccomp-dev. Only
# missing packages are installed, so a build image that has them all needs
# no Debian mirror.
COPY go.mod ./
COPY scripts/deps.sh scripts/
RUN scripts/deps.sh build && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY . .
ARG GOPROXY
ARG VERSION=dev
# The module and build caches persist between builds (BuildKit and buildah
# cache mounts) and stay out of the image.
RUN --mount=type=cache,id=jobrun-gomod,target=/root/go-mod \
	--mount=type=cache,id=jobrun-gobuild,target=/root/go-build \
	GOMODCACHE=/root/go-mod GOCACHE=/root/go-build make build VERSION="$VERSION"

FROM ${BASE_IMAGE}
RUN set -eu; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		ca-certificates libseccomp2; \
	apt-get clean; rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/ /usr/local/bin/
# The state dir must be a volume, not the container's own overlay root: the
# agent mounts overlay snapshots in it, and overlayfs cannot sit on overlayfs.
ENV JOBRUN_STATE_DIR=/var/lib/jobrun
VOLUME /var/lib/jobrun
# By default the server, on :8080 with SQLite in the state dir (its flags'
# defaults, so each can be changed with -e JOBRUN_SERVER_<FLAG>=...); the agent is
# `jobrun agent` in the same image (examples/deploy/README.md).
EXPOSE 8080
CMD ["jobrun", "server"]
