package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// buildJob builds a multi-stage Dockerfile on the Debian test image
// (loaded from its OCI layout in the workspace) with a builder, its
// storage on the cache volume "c" (shared: a plain directory, idmapped;
// never a private one, see sandbox/builder.go). The step first makes a
// local .deb whose file belongs to uid 1000, reproducible (fixed times),
// so that a second build's COPY of it hits the layer cache. The first
// stage makes a set-uid file owned by a user of its own; the second
// installs the .deb with dpkg, copies the set-uid file, adds a user and
// gives it the file and checks all that in a RUN step. Then the builder
// lists the image, and checkImage prints what the image holds. BUILDS
// stands for the builds_images line, LOAD and BUILD for the builder's
// commands (builders).
const buildJob = `
job "build" {
  image   = "IMAGE"
  network = "none"
  BUILDS
  cache "c" { path = "/var/lib/containers" }
  step "build" {
    run = <<-EOT
      set -e
      LOAD
      mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/opt/demo /tmp/ctx
      printf 'Package: demo\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: d\n' >/tmp/pkg/DEBIAN/control
      echo hi >/tmp/pkg/opt/demo/file
      chown -R 1000:1000 /tmp/pkg/opt/demo
      find /tmp/pkg -exec touch -h -d @1 {} +
      SOURCE_DATE_EPOCH=1 dpkg-deb --build /tmp/pkg /tmp/ctx/demo.deb >/dev/null
      touch -d @1 /tmp/ctx/demo.deb
      cat >/tmp/ctx/Dockerfile <<'END'
      FROM localhost/base:latest AS tools
      LABEL builder=BUILDER
      RUN mkdir /out && useradd -u 1002 -M tool && cp /bin/true /out/suid && chown tool /out/suid && chmod 4755 /out/suid
      FROM localhost/base:latest
      LABEL builder=BUILDER
      COPY demo.deb /tmp/demo.deb
      RUN dpkg -i /tmp/demo.deb && rm /tmp/demo.deb
      COPY --from=tools /out/suid /usr/local/bin/suid
      RUN useradd -u 1001 -m app && chown app:app /usr/local/bin/suid && chmod 4755 /usr/local/bin/suid
      RUN test -u /usr/local/bin/suid && id app && test $(stat -c %u /opt/demo/file) = 1000
      END
      BUILD
    EOT
  }
}
`

// builderSteps are the commands a builder's job runs. podman maps its
// nested user namespace from /etc/subuid (newuidmap): the job's root
// gives itself its other 65535 ids.
type builderSteps struct{ load, build string }

// checkImage prints what the built image holds, seen from a container of
// it (buildah run, chroot isolation, for either builder: they share the
// storage; podman run's runtime cannot pivot_root in the nested
// namespaces, and `buildah unshare` fails in a job, memfd_create EINVAL):
// lines "stat PATH UID:GID MODE" and "pkg NAME VERSION STATUS".
const checkImage = `c=$(buildah from -q --pull=never localhost/built:1)
      buildah run --isolation chroot "$c" -- sh -c 'for f in /usr/local/bin/suid /home/app /opt/demo/file; do echo "stat $f $(stat -c "%u:%g %a" $f)"; done; echo "pkg $(dpkg-query -W -f "\$${Package} \$${Version} \$${Status}" demo)"'
      buildah rm "$c" >/dev/null`

var builders = map[string]builderSteps{
	"buildah": {
		load: `buildah inspect localhost/base:latest >/dev/null 2>&1 || buildah pull -q oci:/workspace/base:bookworm >/dev/null
      buildah inspect localhost/base:latest >/dev/null 2>&1 || buildah tag $(buildah images -q | head -1) localhost/base:latest`,
		build: `buildah build --layers --pull=never --isolation chroot -t localhost/built:1 /tmp/ctx
      buildah images --format 'image {{.Name}}:{{.Tag}}'
      ` + checkImage,
	},
	"podman": {
		load: `echo root:1:65535 >/etc/subuid; echo root:1:65535 >/etc/subgid
      podman image exists localhost/base:latest || podman pull -q oci:/workspace/base:bookworm >/dev/null
      podman image exists localhost/base:latest || podman tag $(podman images -q | head -1) localhost/base:latest`,
		build: `podman build --pull=never --isolation chroot --cgroup-manager cgroupfs -t localhost/built:1 /tmp/ctx
      podman images --format 'image {{.Repository}}:{{.Tag}}'
      ` + checkImage,
	},
}

// imageHolds are the lines checkImage prints for the built image: the set-uid
// file with its owner and mode, the user's home, the package's file with
// the owner it has in the .deb, and the package installed.
var imageHolds = []string{
	"stat /usr/local/bin/suid 1001:1001 4755",
	"stat /home/app 1001:1001 ",
	"stat /opt/demo/file 1000:1000 644",
	"pkg demo 1.0 install ok installed",
}

// cachedSteps is how many of buildJob's Dockerfile's steps a second build
// takes from the layer cache: all but the FROM lines (LABEL included).
const cachedSteps = 8

func buildahImage(t *testing.T) string {
	return "oci-layout:" + testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN_BUILDAH", "the debian-buildah test image of scripts/testimages.sh") + ":latest"
}

// TestBuildsImagesBuilds: a job with builds_images = true builds a
// multi-stage Dockerfile whose RUN steps install a local .deb, add users
// and make a set-uid file, with buildah and with podman, as its root; the
// builder lists the image, and the image holds the package, the owners
// and the set-uid bit (imageHolds). A second build, in a new job, takes
// every step from the layer cache on the cache volume. Its pair, the same
// job without the option, fails, and the job log names the option.
func TestBuildsImagesBuilds(t *testing.T) {
	img := buildahImage(t)
	base := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN", "the debian test image of scripts/testimages.sh")
	r := usernsRunner(t, 1, true, img)
	// The builder's storage leaves the cache volume when the test ends,
	// however it ends, before the leak check (cleanups run last first),
	// so the volume is as the warm-up job left it; the check still finds
	// any mount, process or namespace of the builder left behind.
	vols := filepath.Join(filepath.Dir(r.WorkDir), "caches", "vols")
	t.Cleanup(func() {
		data, _ := filepath.Glob(filepath.Join(vols, "*", "data", "*"))
		for _, p := range data {
			if err := os.RemoveAll(p); err != nil {
				t.Error(err)
			}
		}
	})
	for _, tc := range []struct {
		builder, builds string
		ok              bool
	}{{"buildah", "builds_images = true", true}, {"podman", "builds_images = true", true}, {"buildah", "", false}} {
		// The label keeps one builder's layers from the other's cache:
		// each runs the RUN steps for real once.
		b := builders[tc.builder]
		src := strings.NewReplacer("BUILDS", tc.builds, "BUILDER", tc.builder, "BUILD", b.build, "LOAD", b.load).Replace(buildJob)
		f := parseJobs(t, img, src)
		var ev events
		res := r.Run(context.Background(), withBase(t, job(t, f, "build"), base), &ev)
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
		for _, want := range imageHolds {
			if !hasLine(out, want) {
				t.Errorf("%s: the image lacks %q:\n%s", tc.builder, want, out)
			}
		}
		// The second build of the same Dockerfile, in a new job, takes
		// its steps' layers from the cache volume.
		var again events
		if res := r.Run(context.Background(), withBase(t, job(t, f, "build"), base), &again); res.Status != Succeeded {
			t.Fatalf("%s: second build: %s %s\n%s", tc.builder, res.Status, res.Reason, again.text())
		}
		if n := strings.Count(again.text(), "Using cache"); n < cachedSteps {
			t.Errorf("%s: second build used the layer cache %d times, want %d (every step but FROM):\n%s", tc.builder, n, cachedSteps, again.text())
		}
	}
	// The builder's storage is on the cache volume (that is its point).
	data, err := filepath.Glob(filepath.Join(vols, "*", "data", "*"))
	if err != nil || !slices.ContainsFunc(data, func(p string) bool { return filepath.Base(p) == "storage" }) {
		t.Fatalf("no builder storage on the cache volume: %v %v", data, err)
	}
}

// withBase gives j a source directory holding the OCI layout at
// layout as base/ (the job's /workspace/base), hard-linked where it can.
func withBase(t *testing.T, j *Job, layout string) *Job {
	t.Helper()
	dst := filepath.Join(j.Source, "base")
	if _, err := exec.Command("cp", "-al", layout, dst).CombinedOutput(); err != nil {
		// Another filesystem (test-vm's scratch disk under a 9p root):
		// a plain copy, over what the failed one left.
		if err := os.RemoveAll(dst); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", layout, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", layout, err, out)
		}
	}
	return j
}

// hasLine reports whether a line of out, its job log prefix and spaces
// aside, starts with prefix.
func hasLine(out, prefix string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), prefix) {
			return true
		}
	}
	return false
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
