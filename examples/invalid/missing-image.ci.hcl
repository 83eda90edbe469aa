# Every job needs an image, its own or the defaults'.
job "orphan" {
  step "x" { run = "true" }
}
job "service" {
  image = "busybox"
  service "db" {
    port = 5432
  }
  step "x" { run = "true" }
}
job "empty" {
  image = ""
  step "x" { run = "true" }
}
# want 2:1 "Job \"orphan\" has no image"
# want 7:3 "Service \"db\" has no image"
# want 13:11 "is not an image reference"
