package jobs

import (
	"strings"
	"testing"
)

func TestBuildsImages(t *testing.T) {
	f := parse(t, `
job "image" {
  image         = "debian"
  builds_images = true
  step "b" { run = "buildah build ." }
}
job "plain" {
  image = "debian"
  step "b" { run = "true" }
}`)
	if !f.Jobs[0].BuildsImages {
		t.Errorf("job image: BuildsImages = false, want true")
	}
	if f.Jobs[1].BuildsImages {
		t.Errorf("job plain: BuildsImages = true, want false")
	}
}

func TestBuildsImagesNotBool(t *testing.T) {
	diags := parseErr(t, `
job "image" {
  image         = "debian"
  builds_images = "yes"
  step "b" { run = "true" }
}`)
	var b strings.Builder
	WriteDiagnostics(&b, diags, nil, false)
	got := b.String()
	for _, want := range []string{"builds_images must be a bool", "test.ci.hcl:4:19"} {
		if !strings.Contains(got, want) {
			t.Errorf("diagnostics %q lack %q", got, want)
		}
	}
}

// TestBuildsImagesRefusesPrivateBuilderStorage: a building job's private
// cache at a builder's storage path is refused, naming the cache, the
// path and why; the controls, a shared or locked cache there, a private
// cache elsewhere, and a private cache there in a job that builds no
// images, parse.
func TestBuildsImagesRefusesPrivateBuilderStorage(t *testing.T) {
	for _, p := range []string{"/var/lib/containers", "/var/lib/containers/storage", "/root/.local/share/containers", "/home/ci/.local/share/containers/storage", "/var/lib/buildkit"} {
		diags := parseErr(t, `
job "image" {
  image         = "debian"
  builds_images = true
  cache "store" {
    path    = "`+p+`"
    sharing = "private"
  }
  step "b" { run = "buildah build ." }
}`)
		var b strings.Builder
		WriteDiagnostics(&b, diags, nil, false)
		got := b.String()
		for _, want := range []string{"Private cache for builder storage", `cache "store" at ` + p, "whiteouts", `sharing = "shared"`, "test.ci.hcl:5:3"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: diagnostics %q lack %q", p, got, want)
			}
		}
	}
	for _, tc := range []struct{ builds, path, sharing string }{
		{"true", "/var/lib/containers", "shared"},
		{"true", "/var/lib/containers", "locked"},
		{"true", "/var/cache/apt", "private"},
		{"true", "/var/lib/containers-not", "private"},
		{"false", "/var/lib/containers", "private"},
	} {
		f := parse(t, `
job "image" {
  image         = "debian"
  builds_images = `+tc.builds+`
  cache "store" {
    path    = "`+tc.path+`"
    sharing = "`+tc.sharing+`"
  }
  step "b" { run = "true" }
}`)
		if len(f.Jobs) != 1 || len(f.Jobs[0].Caches) != 1 {
			t.Errorf("%+v: jobs %v", tc, f.Jobs)
		}
	}
}
