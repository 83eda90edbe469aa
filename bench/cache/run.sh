#!/usr/bin/env bash
# Cold vs warm build of a real Go module with dependencies inside a jobrun
# job, with a `gomod` cache (/go/pkg/mod) and a `gobuild` cache
# (/root/.cache/go-build), and no network in the job.
#
# The module (made in a temp dir) imports cobra, go-hclog, hcl/v2, uuid,
# klauspost/compress (zstd) and robfig/cron; 17 modules in all. Its
# dependencies are served to the job from a GOPROXY=file:///workspace/goproxy
# directory inside the project (the job's copy-on-write workspace), made on
# the host with `go mod download` into a throwaway GOMODCACHE from this
# machine's module cache, so the cold run really fills /go/pkg/mod (checked:
# it prints "go: downloading", the warm run must not) and compiles the
# standard library and every dependency into the empty build cache.
#
# Each repetition uses a fresh state dir: the golang test image is
# imported and unpacked first by an untimed job without caches, so only the
# caches are cold; then the job runs twice, cold then warm, both timed.
# Steps: go build ./... and go vet ./...
# Prints each run, the medians and the ratio warm/cold (target: at most 0.3).
# Writes $BENCH_OUT/cache.json (default bench/out).
# Needs root. usage: bench/cache/run.sh   (env REPS, default 3; TINY=1: one
# repetition of `go build` and `go vet` of a library module that needs only
# agext/levenshtein)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
if [ -n "${TINY:-}" ]; then
	: "${REPS:=1}"
fi
REPS=${REPS:-3}
if [ "$(id -u)" != 0 ]; then
	echo "bench/cache: needs root (containers)" >&2
	exit 1
fi
# Not eval "$(...)" directly: that would hide the script's failure.
images=$(scripts/testimages.sh)
eval "$images"
work=$(mktemp -d /tmp/jobrun-bench-cache.XXXXXX)
trap 'rm -rf "$work"' EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json
"$BENCHRESULT" new -param reps="$REPS" -param tiny="${TINY:-}" "$res" cache \
	"Cold vs warm caches: go build + go vet of a module with its dependencies in a jobrun job (gomod + gobuild caches, no network), each repetition on a fresh state dir"

# A private copy of the layout (hard links: blobs are never rewritten),
# since a rebuild of the test images removes the old set mid-run.
# golang:latest; older image sets call the same image debian-go:1.26.
if [ -d "$JOBRUN_TEST_IMAGES/golang" ]; then
	src=$JOBRUN_TEST_IMAGES/golang tag=latest
else
	src=$JOBRUN_TEST_IMAGES/debian-go tag=1.26
fi
cp -al "$src" "$work/golang" 2>/dev/null || cp -a "$src" "$work/golang"
image=oci-layout:$work/golang:$tag

# The binary lives away from the state dir, as an installed jobrun does.
bench_build ./cmd/jobrun "$work/bin/jobrun"
bench_helpers "$work/bin"

proj=$work/proj
mkdir -p "$proj"
cat >"$proj/go.mod" <<'EOT'
module example.com/benchmod

go 1.26

require (
	github.com/google/go-cmp v0.7.0
	github.com/google/uuid v1.6.0
	github.com/hashicorp/go-hclog v1.6.3
	github.com/hashicorp/hcl/v2 v2.25.0
	github.com/klauspost/compress v1.20.3
	github.com/robfig/cron/v3 v3.0.1
	github.com/spf13/cobra v1.10.2
)
EOT
cat >"$proj/main.go" <<'EOT'
// Command benchmod decodes an HCL snippet, parses its cron schedule and
// compresses it: enough to pull its dependencies into the build.
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclsimple"
	"github.com/klauspost/compress/zstd"
	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"
)

type config struct {
	Name     string `hcl:"name"`
	Schedule string `hcl:"schedule"`
}

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "benchmod"})
	cmd := &cobra.Command{
		Use: "benchmod",
		RunE: func(*cobra.Command, []string) error {
			src := []byte("name = \"x\"\nschedule = \"0 3 * * *\"\n")
			var c config
			if err := hclsimple.Decode("c.hcl", src, nil, &c); err != nil {
				return err
			}
			if _, err := cron.ParseStandard(c.Schedule); err != nil {
				return err
			}
			var buf bytes.Buffer
			w, err := zstd.NewWriter(&buf)
			if err != nil {
				return err
			}
			if _, err := w.Write(src); err != nil {
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
			log.Info("ok", "id", uuid.NewString(), "name", c.Name, "zstd", buf.Len())
			return nil
		},
	}
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
EOT

if [ -n "${TINY:-}" ]; then
	# Tiny mode: one small dependency, so the test stays short.
	cat >"$proj/go.mod" <<'EOT'
module example.com/benchmod

go 1.26

require github.com/agext/levenshtein v1.2.1
EOT
	# A library, not a command: with a dependency that imports no package
	# of the standard library, the cold build compiles the two packages
	# alone (no runtime, no link), yet still fills both caches.
	rm "$proj/main.go"
	cat >"$proj/dist.go" <<'EOT'
// Package benchmod measures an edit distance.
package benchmod

import "github.com/agext/levenshtein"

// Dist is the edit distance of a and b.
func Dist(a, b string) int { return levenshtein.Distance(a, b, nil) }
EOT
fi

# The file proxy: every module the build needs, fetched from this machine's
# module cache (the real proxy only for what is missing there) into a
# throwaway GOMODCACHE whose cache/download is a GOPROXY layout. `go list
# -deps` also completes go.mod's indirect requirements and go.sum.
echo "bench/cache: making the module proxy" >&2
(
	cd "$proj"
	export GOMODCACHE=$work/modcache GOSUMDB=off GOFLAGS=-mod=mod
	export GOPROXY=file://$(go env GOMODCACHE)/cache/download,https://proxy.golang.org
	go mod download
	go list -deps ./... >/dev/null
) >"$work/proxy.log" 2>&1 || {
	cat "$work/proxy.log" >&2
	exit 1
}
cp -r "$work/modcache/cache/download" "$proj/goproxy"
rm -rf "$work/modcache"
nmod=$(find "$proj/goproxy" -name '*.zip' | wc -l)

cat >"$proj/.ci.hcl" <<EOT
job "build" {
  image   = "$image"
  timeout = "30m"
  resources {
    memory = "2GiB"
  }
  env = {
    GOPROXY     = "file:///workspace/goproxy"
    GOSUMDB     = "off"
    GOFLAGS     = "-mod=mod -buildvcs=false"
    GOCACHE     = "/root/.cache/go-build"
    CGO_ENABLED = "0"
  }
  cache "gomod"   { path = "/go/pkg/mod" }
  cache "gobuild" { path = "/root/.cache/go-build" }
  step "build" { run = "go build ./..." }
  step "vet"   { run = "go vet ./..." }
}
EOT
mkdir -p "$work/warm"
cat >"$work/warm/.ci.hcl" <<EOT
job "image" {
  image = "$image"
  step "version" { run = "go version" }
}
EOT

# run STATE JOBFILE OUT: runs the job file, output to OUT, and prints its
# wall time in milliseconds.
run() {
	local t0 t1
	t0=${EPOCHREALTIME/./}
	if ! "$work/bin/jobrun" local --state-dir "$1" --artifacts "$work/artifacts" "$2" >"$3" 2>&1; then
		echo "bench/cache: jobrun local $2 failed:" >&2
		cat "$3" >&2
		return 1
	fi
	t1=${EPOCHREALTIME/./}
	echo $(((t1 - t0) / 1000))
}

echo "cold vs warm go build + go vet of a module with $nmod dependency modules, in a jobrun job (gomod + gobuild caches, no network); $REPS fresh state dirs"
: >"$work/cold.ms"
: >"$work/warm.ms"
for i in $(seq 1 "$REPS"); do
	state=$work/state-$i
	run "$state" "$work/warm/.ci.hcl" "$work/out" >/dev/null
	cold=$(run "$state" "$proj/.ci.hcl" "$work/cold.out")
	warm=$(run "$state" "$proj/.ci.hcl" "$work/warm.out")
	grep -q "go: downloading" "$work/cold.out" || {
		echo "bench/cache: the cold run downloaded no module:" >&2
		cat "$work/cold.out" >&2
		exit 1
	}
	if grep -q "go: downloading" "$work/warm.out"; then
		echo "bench/cache: the warm run downloaded modules again:" >&2
		cat "$work/warm.out" >&2
		exit 1
	fi
	# Both caches missed on the cold run and hit on the warm one (the
	# summary's CACHE HITS column).
	grep -Eq '^build +succeeded .* 0/2 +[0-9]+ *$' "$work/cold.out" &&
		grep -Eq '^build +succeeded .* 2/2 +[0-9]+ *$' "$work/warm.out" || {
		echo "bench/cache: want cache hits 0/2 cold and 2/2 warm:" >&2
		sed -n '/^JOB /,/^$/p' "$work/cold.out" "$work/warm.out" >&2
		exit 1
	}
	echo "$cold" >>"$work/cold.ms"
	echo "$warm" >>"$work/warm.ms"
	printf 'run %d: cold %6.1f s  warm %5.1f s  (%.2fx)\n' "$i" "$(echo "$cold / 1000" | bc -l)" \
		"$(echo "$warm / 1000" | bc -l)" "$(echo "$warm / $cold" | bc -l)"
	rm -rf "$state"
done
median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
cm=$(median "$work/cold.ms")
wm=$(median "$work/warm.ms")
printf 'median: cold %.1f s, warm %.1f s; ratio warm/cold: %.2fx (target <= 0.3x)\n' \
	"$(echo "$cm / 1000" | bc -l)" "$(echo "$wm / 1000" | bc -l)" "$(echo "$wm / $cm" | bc -l)"
echo "last cold run's summary:"
sed -n '/^JOB /,/^$/p' "$work/cold.out"
echo "last warm run's summary:"
sed -n '/^JOB /,/^$/p' "$work/warm.out"
"$BENCHRESULT" add -chart bars -scale 0.001 "$res" "go build + vet" "jobrun, cold caches" s <"$work/cold.ms"
"$BENCHRESULT" add -chart bars -scale 0.001 -peer "jobrun, cold caches" -target 'ratio<=0.3' "$res" "go build + vet" "jobrun, warm caches" s <"$work/warm.ms"
"$BENCHRESULT" finish "$res" "$BENCH_OUT/cache.json"
