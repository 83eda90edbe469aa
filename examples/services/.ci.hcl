# Services, secrets, network and concurrency: the schema's remaining
# blocks. The runner says "not supported yet" for what it cannot do yet
# rather than ignoring it.

workflow {
  on "push" { branches = ["main"] }
  on "tag"  { tags = ["v*"] }
  on "cron" {
    schedule = "30 2 * * 1-5"
    branch   = "main"
  }
  on "manual" {}
}

job "integration" {
  image       = "golang:1.26"
  agent       = ["linux", "amd64"]
  network     = "bridge"
  secrets     = ["DATABASE_PASSWORD"]
  concurrency = "database"
  timeout     = "45m"
  service "postgres" {
    image   = "postgres:16"
    env     = { POSTGRES_PASSWORD = "test" }
    command = ["postgres", "-c", "fsync=off"]
    port    = 5432
  }
  step "wait" {
    run     = "until nc -z postgres 5432; do sleep 1; done"
    workdir = "/tmp"
  }
  step "test" {
    run = "go test -tags integration ./..."
  }
}
