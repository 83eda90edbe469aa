# Services, secrets, network and concurrency. The job runs on its own
# bridge network (the default); each service runs as a container of its
# own in the job's network namespace, so the job reaches it at
# localhost:PORT and by the service's name. Steps start once every
# service with a port accepts connections on it.

workflow {
  on "push" { branches = ["main"] }
  on "tag"  { tags = ["v*"] }
  on "cron" {
    schedule = "30 2 * * 1-5"
    branch   = "main"
  }
}

job "integration" {
  image       = "busybox"
  agent       = ["linux", "amd64"]
  network     = "bridge"
  secrets     = ["DATABASE_PASSWORD"]
  concurrency = "database"
  timeout     = "45m"
  # A database would be, say:
  #   service "postgres" {
  #     image = "postgres:16"
  #     env   = { POSTGRES_PASSWORD = "test" }
  #     port  = 5432
  #   }
  service "web" {
    image   = "busybox"
    env     = { GREETING = "healthy" }
    command = ["sh", "-c", "mkdir -p /www && echo $GREETING > /www/health && exec httpd -f -p 8080 -h /www"]
    port    = 8080
  }
  step "by-name" {
    run     = "wget -q -O - http://web:8080/health"
    workdir = "/tmp"
  }
  step "localhost" {
    run = "test \"$(wget -q -O - http://localhost:8080/health)\" = healthy"
  }
}
