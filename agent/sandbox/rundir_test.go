package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunDir: the run dir is in memory, one per state dir, and a
// directory jobrun would use that someone else could write is refused.
func TestRunDir(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ra, err := RunDir(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := RunDir(b)
	again, _ := RunDir(a + "/.")
	if ra == rb || ra != again {
		t.Errorf("run dirs %s (again %s) and %s: want one per state dir", ra, again, rb)
	}
	if inMemory("/run") || inMemory("/dev/shm") {
		// Every host this runs on has one of them.
		if strings.HasPrefix(ra, a) || !inMemory(filepath.Dir(filepath.Dir(filepath.Dir(ra)))) {
			t.Errorf("run dir %s is not on a tmpfs", ra)
		}
	} else {
		t.Logf("neither /run nor /dev/shm is a tmpfs: run dir %s", ra)
	}

	ok := filepath.Join(t.TempDir(), "ok")
	if err := privateDir(ok); err != nil {
		t.Errorf("new private dir: %v", err)
	}
	if err := privateDir(ok); err != nil {
		t.Errorf("existing private dir: %v", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(open); err == nil {
		t.Error("a directory anyone can write was accepted")
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(link); err == nil {
		t.Error("a symbolic link was accepted")
	}
}
