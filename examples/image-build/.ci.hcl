# Builds this directory's Dockerfile in an unprivileged job, pushes the
# image to a registry with a login from a jobrun secret, and runs the
# pushed image in a later job by its reference.
#
# The image's reference is registry.jobrun.test/example/hello:latest in
# both jobs. A job file has no variables, so "run" names it as written;
# "build" pushes to $REGISTRY, which is that name too unless `--env
# REGISTRY=HOST:PORT` (or the run's env) points the push at the registry's
# address, and then the agent config maps the name onto the same address
# (`registry "registry.jobrun.test" { mirrors = ["HOST:PORT"] }`). With a
# registry of your own, write its name in both places instead. The agent
# needs (see examples/README.md): a login for the registry, to pull what
# "build" pushed; its CA in ca_file if a private CA signed its
# certificate; and, for a registry on the agent's own host, its
# address:port in network.allow (jobs reach nothing of the host otherwise).
# `scripts/demo.sh examples/image-build/.ci.hcl` runs it with a registry of
# its own.

job "build" {
  image         = "quay.io/buildah/stable"
  builds_images = true
  secrets       = ["REGISTRY_PASSWORD"]
  env = {
    REGISTRY      = "registry.jobrun.test"
    REGISTRY_USER = "ci"
    BASE_IMAGE    = "docker.io/library/busybox:latest"
  }
  # The builder's storage: the next run's build takes unchanged layers
  # from here ("Using cache"). A cache volume, never a private one.
  cache "containers" { path = "/var/lib/containers" }

  step "login" {
    run = "printenv REGISTRY_PASSWORD | buildah login --username \"$REGISTRY_USER\" --password-stdin \"$REGISTRY\""
  }
  step "build" {
    run = "buildah build --layers --isolation chroot --build-arg BASE=\"$BASE_IMAGE\" -t \"$REGISTRY/example/hello:latest\" ."
  }
  step "push" {
    run = "buildah push \"$REGISTRY/example/hello:latest\""
  }
}

job "run" {
  image = "registry.jobrun.test/example/hello:latest"
  needs = ["build"]
  step "hello" {
    run = "hello"
  }
}
