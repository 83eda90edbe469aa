# Names must be unique where they name something.
job "test" {
  image = "busybox"
  step "x" { run = "true" }
  step "x" { run = "false" }
  cache "deps" { path = "/deps" }
  cache "deps" { path = "/other" }
  resources { cpus = 1 }
  resources { cpus = 2 }
}
job "test" {
  image = "busybox"
  step "y" { run = "true" }
}
workflow {}
workflow {}
# want 5:8 "Duplicate step \"x\""
# want 7:9 "Duplicate cache \"deps\""
# want 9:3 "Duplicate resources block"
# want 11:5 "Duplicate job \"test\""
# want 16:1 "Duplicate workflow block"
