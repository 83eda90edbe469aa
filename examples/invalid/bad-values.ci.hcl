# Values with a fixed set of choices, paths, globs and names.
workflow {
  on "push" { branches = ["main", "release/[0-9"] }
}
job "values" {
  image   = "busybox"
  network = "hots"
  env     = { "MY-VAR" = "x" }
  secrets = ["TOKEN", "bad name"]
  cache "deps" {
    path    = "deps"
    sharing = "lockd"
    key     = "deps-${md5("x")}"
  }
  step "x" {
    run = "echo ${upper("x")}"
    if  = "sucess"
  }
  artifacts {
    paths = ["/etc/passwd", "../secret", "ok/**"]
    when  = "allways"
  }
}
job "bad name!" {
  image = "busybox"
  step "x" { run = "true" }
}
# want 3:35 "invalid pattern \"release/[0-9\""
# want 7:13 "Did you mean \"host\"?"
# want 8:15 "\"MY-VAR\" is not a valid variable name"
# want 9:23 "\"bad name\" is not a valid variable name"
# want 11:15 "must be an absolute path"
# want 12:15 "Did you mean \"locked\"?"
# want 13:23 "Unknown function \"md5\""
# want 16:19 "Function calls not allowed"
# want 17:11 "Did you mean \"success\"?"
# want 20:14 "is absolute"
# want 20:29 "leaves the workspace"
# want 21:13 "Did you mean \"always\"?"
# want 24:5 "Invalid job name"
