# jobrun is built with cgo and the seccomp tag everywhere: the binary, vet,
# staticcheck and tests, so what is checked is what ships.
GO      ?= go
TAGS    ?= seccomp
BIN     ?= bin/jobrun
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 1

.PHONY: build test test-vm demo fuzz bench bench-report bench-docs lint deps clean

## build: jobrun, and next to it the launcher (the static init of its job
## containers) and the starter (which starts them). First the Debian
## packages building needs (scripts/deps.sh build: installed as root, else
## the apt-get line to run).
build:
	scripts/deps.sh build
	$(GO) build -tags '$(TAGS)' -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/jobrun
	TAGS='$(TAGS)' scripts/helpers.sh $(dir $(BIN))

## test: install what is missing, start the services, lint and run every test.
test:
	TAGS='$(TAGS)' scripts/test.sh

## test-vm: the container tests that differ between cgroup hierarchies and
## kernels, in a qemu guest on Debian 12's 6.1 kernel with cgroup v2
## (scripts/test-vm.sh says which).
test-vm:
	TAGS='$(TAGS)' scripts/test-vm.sh

## demo: build jobrun and run a real example job (scripts/demo.sh installs
## what it uses besides: scripts/deps.sh demo).
demo: build
	scripts/demo.sh

## fuzz: fuzz the job-file parser for 60 s.
fuzz:
	$(GO) test -tags '$(TAGS)' -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./jobs

## bench: compare jobrun with its peers on this machine (bench/run.sh runs every
## bench/*/run.sh), then write the report: bench/out/REPORT.md, report.html, SVGs.
bench: build
	bench/run.sh

## bench-report: write the report again from the figures in bench/out.
bench-report:
	$(GO) run ./bench/report -in bench/out

## bench-docs: run every bench and publish the report as docs/bench (committed;
## README shows its headline chart). BENCH_NOTE='...' adds a line on the run.
## The copy is made even when a bench failed; the status is still bench/run.sh's.
bench-docs: build
	bench/run.sh; rc=$$?; \
	rm -rf docs/bench && mkdir -p docs/bench && cp bench/out/*.json docs/bench/ && \
	$(GO) run ./bench/report -in docs/bench -note "$(BENCH_NOTE)" && exit $$rc

lint:
	$(GO) vet -tags '$(TAGS)' ./...
	staticcheck -tags '$(TAGS)' ./...

## deps: everything the tests need (scripts/deps.sh test).
deps:
	scripts/deps.sh test

clean:
	rm -rf bin
