# Manual runs (jobrun trigger) always run: an on "manual" block would
# change nothing, so it is refused rather than silently ignored.
workflow {
  on "push" { branches = ["main"] }
  on "manual" {}
}
job "x" {
  image = "busybox"
  step "x" { run = "true" }
}
# want 5:6 "No on \"manual\" block"
