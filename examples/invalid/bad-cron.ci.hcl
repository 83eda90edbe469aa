# Cron schedules are parsed with robfig/cron's standard parser.
workflow {
  on "cron" {
    schedule = "0 25 * * *"
  }
  on "cron" {
    branch = "main"
  }
  on "cron" {
    schedule = "TZ=Europe/Paris 0 3 * * *"
  }
  on "cron" {
    schedule = "@daily"
  }
  on "cron" {
    schedule = "*/15 * * * 1-5"
  }
}
job "nightly" {
  image = "busybox"
  step "x" { run = "true" }
}
# want 4:16 "Invalid cron schedule"
# want 6:3 "Missing schedule"
# want 10:16 "time zone prefixes are not supported"
