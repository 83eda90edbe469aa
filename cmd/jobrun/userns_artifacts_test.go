package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/artifacts"
)

// TestLocalUsernsArtifactsKeepModesNotOwners: a job in a user namespace (the
// default) leaves files owned by its root and by an image user, with
// various modes, as artifacts. On the host the stored files belong to
// jobrun's own user, never to an id of the job's range; the manifest keeps
// their modes, and a job that needs them, in another range, gets them with
// those modes, owned by its own root.
func TestLocalUsernsArtifactsKeepModesNotOwners(t *testing.T) {
	file := project(t, `
job "build" {
  image = "IMAGE"
  step "build" {
    run = <<-EOT
      cat /proc/self/uid_map
      mkdir -p out
      echo tool > out/tool && chmod 0755 out/tool
      echo secret > out/secret && chmod 0600 out/secret
      echo data > out/data && chmod 0640 out/data && chown 1000:1000 out/data
    EOT
  }
  artifacts { paths = ["out/*"] }
}
job "use" {
  image = "IMAGE"
  needs = ["build"]
  step "look" { run = "stat -c 'got %n %a %u:%g' out/tool out/secret out/data" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	// Control: the job did run in a range, not as the host's root.
	if !strings.Contains(r.out, "user namespaces: on") || strings.Contains(r.out, "0 4294967295") {
		t.Fatalf("the job did not run in a user namespace of its own:\n%s", r.out)
	}
	order(t, r.out, `got out/tool 755 0:0`, `got out/secret 600 0:0`, `got out/data 640 0:0`)
	want := map[string]os.FileMode{"tool": 0o755, "secret": 0o600, "data": 0o640}
	found := 0
	filepath.WalkDir(h.artifacts, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, "/out/") {
			return nil
		}
		if _, ok := want[filepath.Base(p)]; !ok {
			return nil
		}
		found++
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
			t.Errorf("%s: owned by %d:%d on the host, want jobrun's %d:%d", p, st.Uid, st.Gid, os.Getuid(), os.Getgid())
		}
		return nil
	})
	if found != len(want) {
		t.Fatalf("found %d of the %d artifacts under %s", found, len(want), h.artifacts)
	}
	// The manifest keeps the modes the job gave them.
	manifests, _ := filepath.Glob(filepath.Join(h.artifacts, "*", "*", "build", "1.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("manifests %q, want one", manifests)
	}
	b, err := os.ReadFile(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	var m artifacts.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if mode := want[filepath.Base(f.Path)]; f.Mode != mode {
			t.Errorf("manifest: %s mode %v, want %v", f.Path, f.Mode, mode)
		}
	}
}
