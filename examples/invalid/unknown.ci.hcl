# Unknown blocks and attributes get a suggestion.
workflow {
  on "pushh" {}
  on "push" { branch = ["main"] }
}
jobs "x" {}
job "build" {
  imgae = "busybox"
  stpe "x" { run = "true" }
  step "y" {
    command = "true"
  }
}
# want 3:6 "Did you mean \"push\"?"
# want 4:15 "Did you mean \"branches\"?"
# want 6:1 "Did you mean \"job\"?"
# want 7:1 "Missing image"
# want 8:3 "Did you mean \"image\"?"
# want 9:3 "Did you mean \"step\"?"
# want 10:3 "Step \"y\" has no run"
# want 11:5 "An argument named \"command\" is not expected here"
