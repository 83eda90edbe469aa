# A pull policy that is not one of always, if-missing, never, and an
# image_credentials that is not a secret name.
job "pull" {
  image             = "busybox"
  pull              = "alway"
  image_credentials = "bad name"
  step "x" { run = "true" }
}
# want 5:23 "Did you mean \"always\"?"
# want 6:23 "\"bad name\" is not a valid variable name"
