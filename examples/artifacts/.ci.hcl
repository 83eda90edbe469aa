# Artifacts: files a job keeps, and a later job that receives them.

job "report" {
  image = "busybox"
  step "generate" {
    run = <<-SH
      mkdir -p reports/html
      echo "<h1>report</h1>" > reports/html/index.html
      date -u > reports/generated.txt
    SH
  }
  step "on-failure" {
    if  = "failure"
    run = "echo the report failed; ls -R reports || true"
  }
  artifacts {
    paths     = ["reports/**"]
    when      = "always"
    expire_in = "30d"
    required  = true
  }
}

job "publish" {
  image = "busybox"
  needs = ["report"]
  step "check" {
    run = "cat reports/html/index.html reports/generated.txt"
  }
  step "optional" {
    run           = "test -f reports/extra.txt"
    allow_failure = true
  }
}
