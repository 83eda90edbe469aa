# jobrun is built with cgo and the seccomp tag everywhere: the binary, vet,
# staticcheck and tests, so what is checked is what ships.
GO      ?= go
TAGS    ?= seccomp
BIN     ?= bin/jobrun
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 1

.PHONY: build test test-vm demo fuzz bench lint deps clean

## build: jobrun, and next to it the launcher (the static init of its job
## containers) and the starter (which starts them).
build:
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

## demo: build jobrun and run a real example job.
demo: build
	scripts/demo.sh

## fuzz: fuzz the job-file parser for 60 s.
fuzz:
	$(GO) test -tags '$(TAGS)' -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./jobs

## bench: compare jobrun with its peers on this machine (bench/run.sh runs every bench/*/run.sh).
bench: build
	bench/run.sh

lint:
	$(GO) vet -tags '$(TAGS)' ./...
	staticcheck -tags '$(TAGS)' ./...

deps:
	scripts/deps.sh

clean:
	rm -rf bin
