package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// debianImage is the test debian image (files owned by root and by other
// ids: /etc/shadow is root:shadow) as an oci-layout reference.
func debianImage(t *testing.T) string {
	t.Helper()
	dir := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	return "oci-layout:" + filepath.Join(dir, "debian") + ":bookworm"
}

// ownUIDJob is a job on image that says who it is and what it maps.
const ownUIDJob = `
job "who" {
  image = "%s"
  network = "none"
  step "id" { run = "echo id=$(id -u):$(id -g); echo map=$(cat /proc/self/uid_map); echo ok > /workspace/out.txt" }
  step "other-users" { run = "su -s /bin/sh nobody -c id || echo SU-REFUSED; chown 1000 /workspace/out.txt || echo CHOWN-REFUSED" }
  artifacts {
    paths = ["out.txt"]
  }
}
`

// ownUIDWarned checks the own-uid warning: once, with the usermod line
// for the user.
func ownUIDWarned(t *testing.T, u *rlUser, stderr string) {
	t.Helper()
	if n := strings.Count(stderr, "jobrun: warning: no subordinate ids for "+u.name); n != 1 {
		t.Errorf("want the own-uid warning once, got %d in:\n%s", n, stderr)
	}
	re := regexp.MustCompile(`(?m)^  sudo usermod --add-subuids (\d+)-(\d+) --add-subgids (\d+)-(\d+) ` + u.name + `$`)
	m := re.FindStringSubmatch(stderr)
	if m == nil || m[1] != m[3] || m[2] != m[4] {
		t.Fatalf("no usermod line for %s in:\n%s", u.name, stderr)
	}
	start, _ := strconv.Atoi(m[1])
	end, _ := strconv.Atoi(m[2])
	if end-start+1 != 65536 {
		t.Errorf("proposed range %d-%d is not 65536 ids", start, end)
	}
	// The proposal is free: no user's range overlaps it.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			p := strings.Split(line, ":")
			if len(p) != 3 {
				continue
			}
			s, _ := strconv.Atoi(p[1])
			n, _ := strconv.Atoi(p[2])
			if s <= end && start < s+n {
				t.Errorf("proposed range %d-%d overlaps %s's in %s", start, end, p[0], f)
			}
		}
	}
}

// TestRootlessOwnUID: a user without subordinate ranges runs a job whose
// image needs only root (busybox): warned once, the usermod line given,
// the job root in it with only the user's uid mapped, unable to become or
// chown to another user (as the warning says), its artifact collected,
// nothing left behind.
func TestRootlessOwnUID(t *testing.T) {
	u := newRLUser(t, false)
	file := u.write(t, fmt.Sprintf(ownUIDJob, "IMAGE"))
	r := u.local(t, file)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	u.checkLeaks(t)
	ownUIDWarned(t, u, r.err)
	if !strings.Contains(r.out, "id=0:0") {
		t.Errorf("the job is not root in its namespace:\n%s", r.out)
	}
	if !regexp.MustCompile(fmt.Sprintf(`map=\s*0 %d 1(\s|$)`, u.uid)).MatchString(r.out) {
		t.Errorf("the job's uid_map is not the user's uid alone:\n%s", r.out)
	}
	// What the warning says a job cannot do; TestRootlessIDs's su as
	// nobody, with ranges, is the control.
	if !strings.Contains(r.out, "SU-REFUSED") || !strings.Contains(r.out, "CHOWN-REFUSED") {
		t.Errorf("a job with only the user's uid mapped switched to, or chowned to, another user:\n%s", r.out)
	}
	if !strings.Contains(r.out, "only your uid mapped") {
		t.Errorf("the run's first lines do not say only the user's uid is mapped:\n%s", r.out)
	}
	if out, err := exec.Command("find", filepath.Join(u.home, "artifacts"), "-name", "out.txt", "-user", u.name).Output(); err != nil || len(out) == 0 {
		t.Errorf("no artifact out.txt of the user's under %s/artifacts (%v)", u.home, err)
	}
	// The hello example as written (busybox), and a second run on the
	// warm store: still warned, once.
	hello := u.write(t, example(t, "hello"))
	for i := 0; i < 2; i++ {
		h := u.local(t, hello)
		if h.code != 0 {
			t.Fatalf("hello, run %d: exit %d", i+1, h.code)
		}
		ownUIDWarned(t, u, h.err)
	}
}

// TestRootlessOwnUIDRefusesOtherOwners: in own-uid mode an image with a
// file owned by another id (debian's /etc/shadow, group shadow) is
// refused before any job starts, the message naming the image, the
// layer, a file, its owner and the usermod line; nothing of it is left
// unpacked. The positive control: a user with ranges runs the same job.
func TestRootlessOwnUIDRefusesOtherOwners(t *testing.T) {
	debian := debianImage(t)
	t.Run("without ranges", func(t *testing.T) {
		u := newRLUser(t, false)
		file := u.write(t, fmt.Sprintf(ownUIDJob, debian))
		r := u.local(t, file)
		if r.code == 0 {
			t.Fatal("a multi-owner image ran with only the user's uid mapped")
		}
		ownUIDWarned(t, u, r.err)
		all := r.out + r.err
		re := regexp.MustCompile(`image \S*debian\S*: layer (?:sha256:)?[0-9a-f]+\S*: (/\S+) is owned by (\d+):(\d+); jobrun runs with only your uid mapped .*sudo usermod --add-subuids \d+-\d+ --add-subgids \d+-\d+ ` + u.name)
		m := re.FindStringSubmatch(all)
		if m == nil {
			t.Fatalf("no refusal naming image, layer, file and owner in:\n%s", all)
		}
		if m[2] == "0" && m[3] == "0" {
			t.Errorf("refused a file owned by 0:0: %s", m[0])
		}
		if strings.Contains(all, "id=") {
			t.Error("the job's step ran")
		}
		layers, _ := filepath.Glob(filepath.Join(u.stateDir(), "images", "layers", "*"))
		for _, l := range layers {
			if out, _ := exec.Command("find", l, "-path", "*"+m[1]).Output(); len(out) > 0 {
				t.Errorf("the refused file was unpacked: %s", out)
			}
		}
	})
	t.Run("with ranges", func(t *testing.T) {
		u := newRLUser(t, true)
		file := u.write(t, fmt.Sprintf(ownUIDJob, debian))
		r := u.local(t, file)
		if r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
		if strings.Contains(r.err, "warning: no subordinate ids") || !strings.Contains(r.out, "id=0:0") {
			t.Errorf("with ranges: warned, or not root in the job:\n%s%s", r.out, r.err)
		}
		u.checkLeaks(t)
	})
}

// TestRootlessOwnUIDRefusesStoredImage: an image the user's store already
// holds (pulled while the user had ranges) is checked again at the job's
// start once the ranges are gone: refused before the job starts, naming
// the image, layer, file and owner.
func TestRootlessOwnUIDRefusesStoredImage(t *testing.T) {
	debian := debianImage(t)
	u := newRLUser(t, true)
	file := u.write(t, fmt.Sprintf(ownUIDJob, debian))
	pull := u.command("image", "pull", debian)
	if out, err := pull.CombinedOutput(); err != nil {
		t.Fatalf("image pull with ranges: %v\n%s", err, out)
	}
	span := fmt.Sprintf("%d-%d", u.sub.Start, u.sub.Start+u.sub.Count-1)
	if out, err := exec.Command("usermod", "--del-subuids", span, "--del-subgids", span, u.name).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v\n%s", err, out)
	}
	r := u.local(t, file, "--pull", "never")
	if r.code == 0 {
		t.Fatal("a stored multi-owner image ran with only the user's uid mapped")
	}
	ownUIDWarned(t, u, r.err)
	all := r.out + r.err
	re := regexp.MustCompile(`image \S*debian\S*: layer (?:sha256:)?[0-9a-f]+ \(\d+ of \d+\) has /\S+ owned by \d+:\d+; jobrun runs with only your uid mapped`)
	if !re.MatchString(all) {
		t.Fatalf("no refusal naming image, layer, file and owner in:\n%s", all)
	}
	if strings.Contains(all, "id=") {
		t.Error("the job's step ran")
	}
}

// TestRootlessOwnUIDNetworkAndCache: in own-uid mode a bridge job gets
// egress through pasta (a server of the host's on an ordinary address)
// but not the host's loopback, and a cache saved by the first run is
// restored by the second; nothing is left behind.
func TestRootlessOwnUIDNetworkAndCache(t *testing.T) {
	tunForUsers(t)
	hostAddrs(t, "198.51.100.61")
	port := hostServer(t)
	u := newRLUser(t, false)
	file := u.write(t, fmt.Sprintf(`
job "net" {
  image = "IMAGE"
  cache "data" {
    path = "/data"
    key  = "data-1"
  }
  step "egress" { run = "timeout 5 wget -q -O - http://198.51.100.61:%[1]d/ && echo" }
  step "loopback" { run = "if timeout 5 wget -q -O - http://127.0.0.1:%[1]d/; then echo; echo LOOPBACK-REACHED; exit 1; else echo LOOPBACK-REFUSED; fi" }
  step "cache" { run = "if test -f /data/warm; then echo CACHE-WARM; else echo CACHE-COLD; echo x > /data/warm; fi" }
}
`, port))
	r := u.local(t, file)
	u.checkLeaks(t)
	if r.code != 0 || !strings.Contains(r.out, "from-host") {
		t.Fatalf("egress: exit %d", r.code)
	}
	ownUIDWarned(t, u, r.err)
	if !strings.Contains(r.out, "LOOPBACK-REFUSED") {
		t.Error("the host's loopback was reached")
	}
	if !strings.Contains(r.out, "CACHE-COLD") {
		t.Error("the first run's cache was not cold")
	}
	again := u.local(t, file)
	if again.code != 0 || !strings.Contains(again.out, "CACHE-WARM") {
		t.Errorf("second run: exit %d, or the cache was not restored", again.code)
	}
	netDir := filepath.Join(u.stateDir(), "network")
	if ents, _ := os.ReadDir(netDir); len(ents) > 0 {
		t.Errorf("%s left: %v", netDir, ents)
	}
}
