# Jobs that need each other can never start.
# want 7:12 "a -> b -> c -> a"
# want 21:12 "d -> d"

job "a" {
  image = "busybox"
  needs = ["b"]
  step "x" { run = "true" }
}
job "b" {
  image = "busybox"
  needs = ["c"]
  step "x" { run = "true" }
}
job "c" {
  image = "busybox"
  needs = ["a"]
  step "x" { run = "true" }
}
job "d" {
  needs = ["d"]
  image = "busybox"
  step "x" { run = "true" }
}
job "fine" {
  image = "busybox"
  needs = ["a"] # needing a job in a cycle is not a cycle of its own
  step "x" { run = "true" }
}
