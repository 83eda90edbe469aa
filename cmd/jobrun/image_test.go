package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/testenv"
)

func runImage(t *testing.T, state string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"--state-dir", state, "image"}, args...))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestImageCommands: pull (a progress line per layer off a terminal), a
// second pull that downloads nothing, import of a docker save archive,
// ls, rm, and prune with and without a budget.
func TestImageCommands(t *testing.T) {
	testenv.RequireRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/cli/img:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()

	out, progress, err := runImage(t, state, "pull", ref)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, progress)
	}
	d, _ := img.Digest()
	if strings.TrimSpace(out) != ref+" "+d.String() {
		t.Errorf("pull printed %q", out)
	}
	lines := regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(ref)+`: layer [0-9a-f]{12} .*: done in `).FindAllString(progress, -1)
	if len(lines) != 2 || strings.Contains(progress, "\x1b[") {
		t.Errorf("want a plain line per layer, got:\n%s", progress)
	}
	if _, progress, err = runImage(t, state, "pull", ref); err != nil || strings.Count(progress, "already present") != 2 {
		t.Errorf("second pull: %v\n%s", err, progress)
	}

	archive := filepath.Join(t.TempDir(), "save.tar")
	other, _ := random.Image(32<<10, 1)
	tag, _ := name.NewTag("example.com/cli/saved:2")
	if err := tarball.WriteToFile(archive, tag, other); err != nil {
		t.Fatal(err)
	}
	if out, _, err = runImage(t, state, "import", archive); err != nil || !strings.HasPrefix(out, "example.com/cli/saved:2 sha256:") {
		t.Errorf("import: %v %q", err, out)
	}
	if _, _, err = runImage(t, state, "import", filepath.Join(t.TempDir(), "missing.tar")); err == nil {
		t.Error("import of a missing file succeeded")
	}

	out, _, err = runImage(t, state, "ls")
	if err != nil || !strings.Contains(out, "REFERENCE") || !strings.Contains(out, ref) || !strings.Contains(out, "example.com/cli/saved:2") {
		t.Errorf("ls: %v\n%s", err, out)
	}
	if _, _, err = runImage(t, state, "rm", "example.com/cli/saved:2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err = runImage(t, state, "rm", "example.com/cli/saved:2"); err == nil || !strings.Contains(err.Error(), "not in the store") {
		t.Errorf("second rm: %v", err)
	}
	if out, _, err = runImage(t, state, "prune"); err != nil || !strings.Contains(out, "removed 1 layers") {
		t.Errorf("prune: %v %q", err, out)
	}
	if out, _, _ = runImage(t, state, "ls", "-q"); strings.TrimSpace(out) != ref {
		t.Errorf("ls -q after prune: %q", out)
	}
	if _, _, err = runImage(t, state, "prune", "--budget", "lots"); err == nil || !isUsageError(err) {
		t.Errorf("prune --budget lots: %v, want a usage error", err)
	}
	if out, _, err = runImage(t, state, "prune", "--budget", "1KiB"); err != nil || !strings.Contains(out, "forgot "+ref) || !strings.Contains(out, "removed 2 layers") {
		t.Errorf("prune --budget: %v %q", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "images", "layers")); len(ents) != 0 {
		t.Errorf("layers left after a budget prune: %v", ents)
	}
}

// TestImagePullTTY: on a terminal, pull draws a bar per layer, redrawn in
// place.
func TestImagePullTTY(t *testing.T) {
	testenv.RequireRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/cli/tty:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	ptmx, tty := openPTY(t)
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx) // until the terminal side closes (EIO)
		got <- string(b)
	}()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(tty)
	cmd.SetArgs([]string{"--state-dir", t.TempDir(), "image", "pull", ref})
	err = cmd.ExecuteContext(context.Background())
	tty.Close()
	screen := <-got
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, screen)
	}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		if !regexp.MustCompile(d.Hex[:12] + ` \[=+\] .* done`).MatchString(screen) {
			t.Errorf("no finished bar for layer %s in:\n%q", d.Hex[:12], screen)
		}
	}
	if !strings.Contains(screen, "\x1b[3A") {
		t.Errorf("the bars are not redrawn in place:\n%q", screen)
	}
}

// openPTY opens a pseudo-terminal pair: the master to read, the terminal
// side as the command's stderr.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Raw output: no \n to \r\n mapping in what the test reads.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err == nil {
		tio.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, tio)
	}
	return master, tty
}
