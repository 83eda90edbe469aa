# A job without steps would do nothing.
job "idle" {
  image = "busybox"
}
job "half" {
  image = "busybox"
  step "blank" {}
  step "empty" { run = "  " }
}
# want 2:1 "Job \"idle\" has no step"
# want 7:3 "Step \"blank\" has no run"
# want 8:24 "Step \"empty\" has an empty run"
