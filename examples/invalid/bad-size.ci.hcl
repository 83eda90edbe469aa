# Sizes go through internal/units; cpus and pids are checked numbers.
job "big" {
  image = "busybox"
  resources {
    cpus   = 0
    memory = "2 gigs"
    pids   = 1.5
  }
  step "x" { run = "true" }
}
job "negative" {
  image = "busybox"
  resources {
    memory = "-512MiB"
    cpus   = "lots"
  }
  step "x" { run = "true" }
}
job "fine" {
  image = "busybox"
  resources {
    memory = 1073741824
    cpus   = 0.5
  }
  step "x" { run = "true" }
}
# want 5:14 "cpus must be greater than 0"
# want 6:14 "invalid size \"2 gigs\""
# want 7:14 "pids must be a whole number"
# want 14:14 "must be greater than zero"
# want 15:14 "cpus must be a number"
