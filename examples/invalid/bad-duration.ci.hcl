# Durations go through internal/units.
job "slow" {
  image   = "busybox"
  timeout = "20 minutes"
  step "x" { run = "true" }
  artifacts {
    paths     = ["out/**"]
    expire_in = "-1h"
  }
}
job "fine" {
  image   = "busybox"
  timeout = "1h30m"
  step "x" { run = "true" }
  artifacts {
    paths     = ["out/**"]
    expire_in = "2w"
  }
}
# want 4:13 "invalid duration \"20 minutes\""
# want 8:17 "must be greater than zero"
