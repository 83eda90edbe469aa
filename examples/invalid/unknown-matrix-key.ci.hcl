# ${matrix.KEY} must name a key of the job's own matrix.
job "build" {
  image = "golang:${matrix.version}"
  matrix {
    goos    = ["linux", "windows"]
    version = ["1.25", "1.26"]
  }
  env = { TARGET = "${matrix.arch}" }
  step "build" { run = "GOOS=${matrix.gos} go build ./..." }
}
job "plain" {
  image = "busybox"
  step "x" { run = "echo ${matrix.goos}" }
}
# want 8:23 "matrix has no key \"arch\""
# want 9:32 "Did you mean \"goos\"?"
# want 13:28 "This job has no matrix block"
