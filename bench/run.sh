#!/usr/bin/env bash
# Runs every benchmark under bench/*/run.sh, each comparing jobrun with its
# real peers on this machine, side by side, and printing ratios.
# usage: bench/run.sh [NAME...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$(go env GOPATH)/bin:$PWD/bin:$PATH
scripts/deps.sh
names=("$@")
if ((${#names[@]} == 0)); then
	for d in bench/*/run.sh; do names+=("$(basename "$(dirname "$d")")"); done
fi
for n in "${names[@]}"; do
	echo "== bench/$n"
	"bench/$n/run.sh"
	echo
done
