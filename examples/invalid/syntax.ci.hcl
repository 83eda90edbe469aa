# A syntax error stops the check there: the rest would only repeat it.
job "hello" {
  image = "busybox"
  step "greet" {
    run = "echo hi"
  }
  timeout = = "5m"
}
# want 7:13 "Invalid expression"
