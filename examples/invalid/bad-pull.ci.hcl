# A pull policy that is not one of always, if-missing, never.
job "pull" {
  image = "busybox"
  pull  = "alway"
  step "x" { run = "true" }
}
# want 4:11 "Did you mean \"always\"?"
