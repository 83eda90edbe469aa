# A matrix: "build" runs once per combination, named like
# `build (arch=amd64, os=linux)`, and "package" waits for all of them.

job "lint" {
  image = "busybox"
  step "check" { run = "test -f .ci.hcl && echo lint ok" }
}

job "build" {
  image = "busybox"
  needs = ["lint"]
  matrix {
    os   = ["linux", "freebsd"]
    arch = ["amd64", "arm64"]
  }
  env = {
    TARGET = "${matrix.os}-${matrix.arch}"
  }
  step "build" {
    # $TARGET is expanded by the shell; ${matrix.os} by jobrun.
    run = "mkdir -p out && echo \"built for ${matrix.os}/${matrix.arch}\" > out/$TARGET.txt && cat out/$TARGET.txt"
  }
  artifacts {
    paths = ["out/*.txt"]
  }
}

job "package" {
  image = "busybox"
  needs = ["build"]
  step "list" { run = "ls -l out/ && test $(ls out | wc -l) -eq 4" }
}
