# A matrix needs values; the rest of such a job is still checked.
job "nothing" {
  image = "busybox"
  matrix {}
  step "x" { run = "true" }
}
job "no-values" {
  image = "busybox"
  matrix {
    goos = []
    arch = ["amd64", "amd64"]
  }
  timeout = "soon"
  step "x" { run = "echo ${matrix.goos}" }
}
# want 4:3 "Empty matrix"
# want 10:12 "matrix.goos has no values"
# want 11:22 "lists \"amd64\" twice"
# want 13:13 "invalid duration \"soon\""
