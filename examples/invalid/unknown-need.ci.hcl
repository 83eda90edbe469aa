# A typo in needs gets a suggestion.
job "build" {
  image = "busybox"
  step "x" { run = "true" }
}
job "test" {
  needs = ["biuld"]
  image = "busybox"
  step "x" { run = "true" }
}
job "deploy" {
  image = "busybox"
  needs = ["build", "release"]
  step "x" { run = "true" }
}
# want 7:12 "unknown job \"biuld\". Did you mean \"build\"?"
# want 13:21 "unknown job \"release\""
