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
