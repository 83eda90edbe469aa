#!/usr/bin/env bash
# Builds the two helper binaries of agent/sandbox into DIR, where jobrun
# (installed in the same DIR) finds them:
#   jobrun-launcher  the static PID 1 of every job container (no cgo: it
#                    runs in any image);
#   jobrun-starter   starts the containers through libcontainer (cgo and
#                    the seccomp tag, as jobrun itself).
# usage: scripts/helpers.sh DIR
set -euo pipefail
dir=${1:?usage: scripts/helpers.sh DIR}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
CGO_ENABLED=0 go build -o "$dir/jobrun-launcher" ./agent/sandbox/launcher
CGO_ENABLED=1 go build -tags "${TAGS:-seccomp}" -o "$dir/jobrun-starter" ./agent/sandbox/starter
