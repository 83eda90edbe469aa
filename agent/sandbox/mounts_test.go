package sandbox

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
)

// mountOpts returns the options of the mount at target as the container
// sees them, from its /proc/mounts.
func mountOpts(t *testing.T, c *Container, target string) []string {
	t.Helper()
	exit, out, errOut := sh(t, c, Process{User: "0"}, "cat /proc/mounts")
	if !exit.Success() {
		t.Fatalf("cat /proc/mounts: %s %s", exit, errOut)
	}
	var opts []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[1] == target {
			opts = strings.Split(f[3], ",") // the last one mounted wins
		}
	}
	if opts == nil {
		t.Fatalf("%s is not mounted in the container:\n%s", target, out)
	}
	return opts
}

func TestMounts(t *testing.T) {
	rt, _ := newRuntime(t)
	ws, cache, ro := t.TempDir(), t.TempDir(), t.TempDir()
	c := start(t, rt, Spec{
		ID:        "mounts",
		Rootfs:    rootfs(t),
		Workspace: ws,
		Mounts: []Mount{
			{Source: cache, Target: "/cache"},
			{Source: ro, Target: "/ro", ReadOnly: true, Options: []string{"noexec"}},
		},
		ShmSize: 8 << 20,
	})
	// On cgroup v1 /sys/fs/cgroup is a tmpfs holding one read-only mount
	// per controller, as with Docker.
	cgroupMount := "/sys/fs/cgroup"
	if !cgroups.IsCgroup2UnifiedMode() {
		cgroupMount = "/sys/fs/cgroup/memory"
	}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"/workspace", []string{"rw", "nosuid", "nodev"}},
		{"/cache", []string{"rw", "nosuid", "nodev"}},
		{"/ro", []string{"ro", "nosuid", "nodev", "noexec"}},
		{"/dev/shm", []string{"nosuid", "nodev", "noexec", "size=8192k"}},
		{"/dev/.jobrun/init", []string{"ro", "nosuid", "nodev"}},
		{"/sys", []string{"ro"}},
		{cgroupMount, []string{"ro"}},
		{"/proc/sys", []string{"ro"}},
	} {
		opts := mountOpts(t, c, tc.target)
		for _, w := range tc.want {
			if !slices.Contains(opts, w) {
				t.Errorf("%s mounted with %v, want %s", tc.target, opts, w)
			}
		}
	}
	exit, out, _ := sh(t, c, Process{}, "cat /etc/hostname; grep -c mounts /etc/hosts; test -f /etc/resolv.conf && echo resolv; echo x >/cache/w && echo written")
	if want := "mounts\n1\nresolv\nwritten\n"; !exit.Success() || out != want {
		t.Errorf("etc files and cache: %s %q, want %q", exit, out, want)
	}
	// The read-only mount refuses writes.
	if exit, _, _ := sh(t, c, Process{}, "echo x >/ro/w"); exit.Success() {
		t.Error("write to a read-only mount succeeded")
	}
}

func TestHostNetwork(t *testing.T) {
	rt, _ := newRuntime(t)
	c := start(t, rt, Spec{ID: "hostnet", Rootfs: rootfs(t), Network: "host"})
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range host {
		want = append(want, e.Name())
	}
	exit, out, _ := sh(t, c, Process{}, "ls /sys/class/net; hostname")
	got := strings.Fields(out)
	if !exit.Success() || len(got) == 0 || got[len(got)-1] != "hostnet" || !slices.Equal(got[:len(got)-1], want) {
		t.Errorf("host network: %s %q, want interfaces %v and hostname hostnet", exit, got, want)
	}
}
