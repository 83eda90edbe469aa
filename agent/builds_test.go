package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// buildJob builds a two-stage Dockerfile with buildah, its storage on the
// cache volume "c" (shared: a plain directory, idmapped; never a private
// one, see sandbox/builder.go). The first stage adds a user and a set-uid
// file, the second copies and checks them; `buildah images` lists the
// result. BUILDS stands for the builds_images line, BUILD for the
// builder's commands (builders).
const buildJob = `
job "build" {
  image   = "IMAGE"
  network = "none"
  BUILDS
  cache "c" { path = "/var/lib/containers" }
  step "build" {
    run = <<-EOT
      set -e
      mkdir -p /tmp/ctx/root/bin
      cp /bin/busybox /tmp/ctx/root/bin/busybox
      cat >/tmp/ctx/Dockerfile <<'END'
      FROM scratch AS base
      LABEL builder=BUILDER
      COPY root/ /
      RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /etc /home/app /tmp && /bin/busybox --install -s && echo root:x:0:0::/root:/bin/sh >/etc/passwd && echo app:x:1001:1001::/home/app:/bin/sh >>/etc/passwd && echo app:x:1001: >/etc/group && chown app:app /home/app && cp /bin/busybox /bin/suid && chmod 4755 /bin/suid"]
      FROM scratch
      LABEL builder=BUILDER
      COPY --from=base / /
      RUN ["/bin/sh", "-c", "test -u /bin/suid && id app && test $(stat -c %u /home/app) = 1001"]
      END
      BUILD
    EOT
  }
}
`

// builders are the build and list commands of each builder. podman maps
// its nested user namespace from /etc/subuid (newuidmap): the job's root
// gives itself its other 65535 ids.
var builders = map[string]string{
	"buildah": `buildah build --layers --isolation chroot -t localhost/built:1 /tmp/ctx
      buildah images --format 'image {{.Name}}:{{.Tag}}'`,
	"podman": `echo root:1:65535 >/etc/subuid; echo root:1:65535 >/etc/subgid
      podman build --isolation chroot --cgroup-manager cgroupfs -t localhost/built:1 /tmp/ctx
      podman images --format 'image {{.Repository}}:{{.Tag}}'`,
}

func buildahImage(t *testing.T) string {
	return "oci-layout:" + testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN_BUILDAH", "the debian-buildah test image of scripts/testimages.sh") + ":latest"
}

// TestBuildsImagesBuilds: a job with builds_images = true builds a
// multi-stage Dockerfile with RUN steps (a user, a set-uid file) with
// buildah, and with podman, as its root, and the builder lists the image;
// a second build takes the RUN steps' layers from the cache volume. Its pair,
// the same job without the option, fails, and buildah says why.
func TestBuildsImagesBuilds(t *testing.T) {
	img := buildahImage(t)
	r := usernsRunner(t, 1, true, img)
	for _, tc := range []struct {
		builder, builds string
		ok              bool
	}{{"buildah", "builds_images = true", true}, {"podman", "builds_images = true", true}, {"buildah", "", false}} {
		// The label keeps one builder's layers from the other's cache:
		// each runs the RUN steps for real once.
		src := strings.NewReplacer("BUILDS", tc.builds, "BUILDER", tc.builder, "BUILD", builders[tc.builder]).Replace(buildJob)
		f := parseJobs(t, img, src)
		var ev events
		res := r.Run(context.Background(), job(t, f, "build"), &ev)
		out := ev.text()
		if !tc.ok {
			if res.Status == Succeeded {
				t.Errorf("without builds_images: the build succeeded:\n%s", out)
			}
			if !strings.Contains(out, "builds_images = true") {
				t.Errorf("without builds_images: no notice naming it:\n%s", out)
			}
			continue
		}
		if res.Status != Succeeded {
			t.Fatalf("%s: %s %s\n%s", tc.builder, res.Status, res.Reason, out)
		}
		if !listed(out, "localhost/built:1") {
			t.Errorf("%s lists no localhost/built:1:\n%s", tc.builder, out)
		}
		if !strings.Contains(out, "uid=1001(app)") {
			t.Errorf("%s: the second stage's RUN step did not run:\n%s", tc.builder, out)
		}
		// The second build of the same Dockerfile, in a new job, takes
		// its RUN steps' layers from the cache volume.
		var again events
		if res := r.Run(context.Background(), job(t, f, "build"), &again); res.Status != Succeeded {
			t.Fatalf("%s: second build: %s %s\n%s", tc.builder, res.Status, res.Reason, again.text())
		}
		if n := strings.Count(again.text(), "Using cache"); n < 2 {
			t.Errorf("%s: second build used the layer cache %d times, want 2 (its RUN steps):\n%s", tc.builder, n, again.text())
		}
	}
	// The builder's storage is on the cache volume (that is its point);
	// take it away so the volume is as the warm-up job left it for the
	// leak check (which checks that no mount, process or namespace of
	// the builder is left).
	data, err := filepath.Glob(filepath.Join(filepath.Dir(r.WorkDir), "caches", "vols", "*", "data", "*"))
	if err != nil || !slices.ContainsFunc(data, func(p string) bool { return filepath.Base(p) == "storage" }) {
		t.Fatalf("no builder storage on the cache volume: %v %v", data, err)
	}
	for _, p := range data {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
}

// listed reports whether out has the line "image REF" (buildah images
// pads its columns).
func listed(out, ref string) bool {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "image" && f[1] == ref {
			return true
		}
	}
	return false
}

// TestBuildsImagesRefusedWithoutUserns: on a runner without user
// namespaces (userns = "off"), a job with builds_images = true is refused
// before anything starts, naming the option; the same job without it runs
// there (the control).
func TestBuildsImagesRefusedWithoutUserns(t *testing.T) {
	r := usernsRunner(t, 1, false, busybox(t))
	r.IDs = nil // userns = "off"
	for _, tc := range []struct {
		builds string
		want   Status
	}{{"builds_images = true", Errored}, {"", Succeeded}} {
		f := parseJobs(t, busybox(t), `
job "j" {
  image   = "IMAGE"
  network = "none"
  `+tc.builds+`
  step "s" { run = "true" }
}`)
		var ev events
		res := r.Run(context.Background(), job(t, f, "j"), &ev)
		if res.Status != tc.want {
			t.Fatalf("%q: %s %s, want %s\n%s", tc.builds, res.Status, res.Reason, tc.want, ev.text())
		}
		if tc.want == Errored {
			if !strings.Contains(res.Reason, "builds_images") || !strings.Contains(res.Reason, "user namespaces") {
				t.Errorf("reason %q names neither builds_images nor user namespaces", res.Reason)
			}
		}
		// The job log's first notice after the checks names the image:
		// the refused job never got that far, the control did.
		if got := strings.Contains(ev.text(), "image oci-layout:"); got != (tc.want == Succeeded) {
			t.Errorf("%q: image resolved = %v:\n%s", tc.builds, got, ev.text())
		}
	}
}
