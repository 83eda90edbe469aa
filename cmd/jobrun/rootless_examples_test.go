package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestRootlessExamples runs every example under examples/ as written, as
// an ordinary user (issue #18, item 6): each ends as it does as root, with
// the same summary (job, status, steps; not the columns a cgroup fills),
// services reached at localhost and by name over pasta, artifacts under
// the user's directory and received by the job that needs them, and the
// go example's caches warm on a second run. The images are the examples'
// own names (busybox, golang:1.26) served by a real registry as a mirror
// of Docker Hub, as in TestExamplesRun.
func TestRootlessExamples(t *testing.T) {
	tunForUsers(t)
	mirror := examplesMirror(t)
	u := newRLUser(t, true)
	cfg := u.writeFile(t, "config.hcl", mirror)
	files, _ := filepath.Glob("../../examples/*/.ci.hcl")
	if len(files) < 5 {
		t.Fatalf("found %d examples", len(files))
	}
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		if name == "image-build" {
			// Building images needs jobs in user namespaces of the
			// host's ranges (issue #19); without root it is refused,
			// before anything starts, naming the setting.
			t.Run(name, func(t *testing.T) {
				r := u.local(t, u.copyExample(t, name), "--config", cfg, "--secret", "REGISTRY_PASSWORD=unused")
				if r.code == 0 || !strings.Contains(r.out+r.err, "builds_images = true needs jobs in user namespaces") {
					t.Errorf("examples/image-build as %s: exit %d, want the builds_images refusal", u.name, r.code)
				}
				u.checkLeaks(t)
			})
			continue
		}
		t.Run(name, func(t *testing.T) {
			file := u.copyExample(t, name)
			args := []string{"--config", cfg}
			if name == "services" {
				args = append(args, "--secret", "DATABASE_PASSWORD=example")
			}
			os.RemoveAll(u.artifacts())
			r := u.local(t, file, args...)
			if r.code != 0 {
				t.Fatalf("examples/%s as %s: exit %d", name, u.name, r.code)
			}
			u.checkLeaks(t)
			if got := u.procs(); len(got) > 0 {
				t.Errorf("processes of %s left after the run: %v", u.name, got)
			}

			// Root's run of the same file, for the summary.
			h := newTestHost(t)
			for _, d := range []string{filepath.Dir(h.state), h.state} {
				if err := os.Chmod(d, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			root := h.local(t, file, args...)
			if root.code != 0 {
				t.Fatalf("examples/%s as root: exit %d", name, root.code)
			}
			if got, want := summary(t, r.out), summary(t, root.out); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("summary as %s:\n%s\nas root:\n%s", u.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			switch name {
			case "services":
				for _, s := range []string{"service web: ready on port 8080", "by-name ", "| healthy"} {
					if !strings.Contains(r.out, s) {
						t.Errorf("services as %s: no %q", u.name, s)
					}
				}
			case "artifacts":
				u.checkArtifacts(t, "reports/html/index.html", "reports/generated.txt")
				if !strings.Contains(r.out, "| <h1>report</h1>") {
					t.Errorf("publish did not receive report's artifacts:\n%s", r.out)
				}
			case "matrix":
				u.checkArtifacts(t, "out/linux-amd64.txt", "out/linux-arm64.txt", "out/freebsd-amd64.txt", "out/freebsd-arm64.txt")
			case "go":
				u.checkArtifacts(t, "bin/hello")
				// The test job starts the build cache; the second run
				// finds it warm. gomod stays empty (the module has no
				// dependencies), so it is cold for root as well: the
				// second runs' hits are compared with root's.
				if !strings.Contains(r.out, "test · cache gobuild: cold") {
					t.Errorf("first run: the test job's build cache is not cold")
				}
				again := u.local(t, file, args...)
				if again.code != 0 {
					t.Fatalf("second run: exit %d", again.code)
				}
				for _, j := range []string{"test", "build"} {
					if !strings.Contains(again.out, j+" · cache gobuild: warm") {
						t.Errorf("second run: %s's build cache is not warm", j)
					}
				}
				rootAgain := h.local(t, file, args...)
				if rootAgain.code != 0 {
					t.Fatalf("second run as root: exit %d", rootAgain.code)
				}
				if got, want := summary(t, again.out), summary(t, rootAgain.out); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("second run's summary as %s:\n%s\nas root:\n%s", u.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		})
	}
}

// copyExample copies examples/NAME into the user's project directory,
// owned by the user, and returns its job file.
func (u *rlUser) copyExample(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("../../examples", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		u.writeFile(t, filepath.Join(name, rel), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(u.project, name, ".ci.hcl")
}

// checkArtifacts fails t unless the user's artifacts directory holds
// each of paths (as a file's path's tail), and everything in it is the
// user's.
func (u *rlUser) checkArtifacts(t *testing.T, paths ...string) {
	t.Helper()
	var files []string
	err := filepath.WalkDir(u.artifacts(), func(f string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(f, &st); err != nil || int(st.Uid) != u.uid {
			t.Errorf("artifact %s: not the user's (%v, uid %d)", f, err, st.Uid)
		}
		if !d.IsDir() {
			files = append(files, f)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	for _, p := range paths {
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "/"+p) }) {
			t.Errorf("no artifact %s under %s: %v", p, u.artifacts(), files)
		}
	}
}
