#!/usr/bin/env bash
# Builds the two helper binaries of agent/sandbox into DIR, where jobrun
# (installed in the same DIR) finds them:
#   jobrun-launcher  the static PID 1 of every job container, a small C
#                    program (static: it runs in any image; C: it starts
#                    in a third of the Go runtime's time);
#   jobrun-starter   starts the containers through libcontainer (cgo and
#                    the seccomp tag, as jobrun itself), linked statically:
#                    it is executed again for every container, and a
#                    static binary skips the dynamic loader (0.45 ms an
#                    exec here); stripped (-s -w: 6.7 MB, not 9.4), since
#                    each one, a `jobrun local` run's too, first copies
#                    itself into a sealed memfd and executes that: it is
#                    ready about 3 ms sooner, before the first container
#                    asks for it.
# usage: scripts/helpers.sh DIR
set -euo pipefail
dir=${1:?usage: scripts/helpers.sh DIR}
cd "$(dirname "$0")/.."
mkdir -p "$dir"
${CC:-cc} -static -O2 -Wall -Wextra -Werror -o "$dir/jobrun-launcher" agent/sandbox/launcher/launcher.c
CGO_ENABLED=1 go build -tags "${TAGS:-seccomp} netgo osusergo" -ldflags '-s -w -extldflags "-static"' \
	-o "$dir/jobrun-starter" ./agent/sandbox/starter
