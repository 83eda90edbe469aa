# ${NAME} is HCL interpolation; shell variables are written $NAME or $${NAME}.
job "env" {
  image = "busybox"
  env = {
    CACHE = "${HOME}/.cache"
    PLAIN = "$HOME/.cache"
  }
  step "bad" { run = "echo ${USER} is in ${PWD}" }
  step "good" { run = "echo $USER is in $${PWD}" }
}
# want 5:16 "escape it as $${HOME}"
# want 8:30 "jobrun has no variable \"USER\""
# want 8:44 "escape it as $${PWD}"
