# The smallest job file: one job, one step.
job "hello" {
  image = "busybox"

  step "greet" {
    run = "echo hello from jobrun on $(uname -s)"
  }
}
