#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: installs what is
# missing, builds the test images, starts the services, runs the linters and
# `go test` over every package. Under CI=true a skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$(go env GOPATH)/bin:$PATH
export CGO_ENABLED=1
TAGS=${TAGS:-seccomp}

scripts/deps.sh test
if [ -x scripts/testimages.sh ]; then
	# Built once per machine into a cache outside the repo, reused across clones.
	eval "$(scripts/testimages.sh)"
fi

svc=$(mktemp -d /tmp/jobrun-services.XXXXXX)
trap 'scripts/services.sh stop "$svc"; rm -rf "$svc"' EXIT
scripts/services.sh start "$svc"
# shellcheck disable=SC1091
. "$svc/env"

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
	echo "gofmt: not formatted:" $bad >&2
	exit 1
fi
echo "== go vet -tags $TAGS"
go vet -tags "$TAGS" ./...
echo "== staticcheck -tags $TAGS"
staticcheck -tags "$TAGS" ./...
echo "== go test -tags $TAGS"
go build -o bin/testreport ./internal/tools/testreport
set +e
if (($#)); then
	go test -tags "$TAGS" -json -count=1 -timeout 30m "$@" ./... | bin/testreport
	rc=${PIPESTATUS[1]}
else
	# Package bench runs every bench in its tiny mode: real jobs whose
	# mounts and cgroups other packages' leak checks would see as theirs,
	# so it runs alone, after the others (one report for both). So do the
	# leak checker's own tests: each expects a clean machine within its
	# few seconds of settling, and another package's job that mounts (a
	# loose "jobrun" mount) for longer than that fails them.
	alone='github.com/jobrun/jobrun/bench|github.com/jobrun/jobrun/internal/leakcheck'
	{
		go test -tags "$TAGS" -json -count=1 -timeout 30m $(go list ./... | grep -vxE "$alone")
		go test -tags "$TAGS" -json -count=1 -timeout 5m ./internal/leakcheck
		go test -tags "$TAGS" -json -count=1 -timeout 15m ./bench
	} | bin/testreport
	rc=${PIPESTATUS[1]}
fi
set -e
exit "$rc"
