# A Go project: vet, test and build with warm module and build caches.
# Run it from this directory: jobrun local .ci.hcl

workflow {
  on "push"         { branches = ["main", "release/*"] }
  on "pull_request" {}
}

defaults {
  image   = "golang:1.26"
  timeout = "20m"
  env = {
    CGO_ENABLED = "0"
    GOFLAGS     = "-buildvcs=false"
    GOPROXY     = "off" # the module has no dependencies; never reach out
  }
  cache "gomod" {
    path = "/go/pkg/mod"
    key  = "gomod-${hashfiles("go.mod", "go.sum")}"
  }
  cache "gobuild" {
    path    = "/root/.cache/go-build"
    sharing = "locked"
  }
}

job "test" {
  resources {
    cpus   = 2
    memory = "2GiB"
    pids   = 2048
  }
  step "vet"  { run = "go vet ./..." }
  step "test" { run = "go test -count=1 ./..." }
}

job "build" {
  needs = ["test"]
  step "build" { run = "go build -o bin/hello ." }
  step "smoke" { run = "./bin/hello jobrun" }
  artifacts {
    paths     = ["bin/hello"]
    expire_in = "7d"
    required  = true
  }
}
