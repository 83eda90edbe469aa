package sandbox

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// buildScript builds a two-stage Dockerfile with builder ("buildah" or
// "podman") as the job's root, its storage on /var/lib/containers (a
// cache volume's place): the first stage adds a user and a set-uid file,
// the second copies them and checks both; the builder's image list
// (lines "image NAME:TAG") then lists the image. Both run as a root step,
// root of a nested user namespace with CAP_SYS_ADMIN (builder.go): they
// take their rootful paths, and podman needs no /etc/subuid.
func buildScript(builder string) string {
	run := `buildah --storage-driver overlay build --isolation chroot -t localhost/built:1 /tmp/ctx
buildah --storage-driver overlay images --format 'image {{.Name}}:{{.Tag}}'
`
	if builder == "podman" {
		run = `podman build --isolation chroot --cgroup-manager cgroupfs -t localhost/built:1 /tmp/ctx
podman images --format 'image {{.Repository}}:{{.Tag}}'
`
	}
	return `set -e
mkdir -p /tmp/ctx/root/bin
cp /bin/busybox /tmp/ctx/root/bin/busybox
cat >/tmp/ctx/Dockerfile <<'END'
FROM scratch AS base
COPY root/ /
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /etc /home /tmp && /bin/busybox --install -s && echo root:x:0:0::/root:/bin/sh >/etc/passwd && echo root:x:0: >/etc/group && echo app:x:1001:1001::/home/app:/bin/sh >>/etc/passwd && echo app:x:1001: >>/etc/group && mkdir /home/app && cp /bin/busybox /bin/suid && chmod 4755 /bin/suid && chown app:app /home/app"]
FROM scratch
COPY --from=base / /
RUN ["/bin/sh", "-c", "test -u /bin/suid && id app && test $(stat -c %u /home/app) = 1001"]
END
` + run
}

// builderRoot is a Debian root with buildah, podman and busybox-static, from
// scripts/testimages.sh.
func builderRoot(t *testing.T) string {
	return testenv.RequireEnv(t, "JOBRUN_TEST_ROOT_BUILDAH", "the Debian root with buildah of scripts/testimages.sh")
}

func TestBuilderBuildsImage(t *testing.T) {
	for _, builder := range []string{"buildah", "podman"} {
		t.Run(builder, func(t *testing.T) {
			rt, _ := newRuntime(t)
			id := builder + "-job"
			ns, rfs := jobNS(t, rt, id, rangeA, false, builderRoot(t))
			storage := t.TempDir()
			traversable(t, storage)
			c := start(t, rt, Spec{ID: id, Rootfs: rfs, UserNS: ns.UserPath(), Builder: true,
				Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
				Mounts: []Mount{{Source: storage, Target: "/var/lib/containers", IDMap: true}}})
			exit, out, errOut := sh(t, c, Process{}, buildScript(builder))
			if !exit.Success() {
				t.Fatalf("build: %s\nstdout:\n%s\nstderr:\n%s", exit, out, errOut)
			}
			if !strings.Contains(strings.Join(strings.Fields(out), " "), "image localhost/built:1") {
				t.Errorf("%s lists no localhost/built:1:\n%s", builder, out)
			}
		})
	}
}

// TestBuilderNeedsBuilder is the positive control's pair: the same build
// in a default container of a user namespace fails (buildah cannot mount
// its storage).
func TestBuilderNeedsBuilder(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "nobuilder-job", rangeA, false, builderRoot(t))
	storage := t.TempDir()
	traversable(t, storage)
	c := start(t, rt, Spec{ID: "nobuilder-job", Rootfs: rfs, UserNS: ns.UserPath(),
		Mounts: []Mount{{Source: storage, Target: "/var/lib/containers", IDMap: true}}})
	exit, out, errOut := sh(t, c, Process{}, buildScript("buildah"))
	if exit.Success() {
		t.Fatalf("build without Builder succeeded:\n%s", out)
	}
	t.Logf("without Builder: %s: %s", exit, errOut)
}

// TestBuilderNeedsUserns: a building container without a user namespace
// would hold the host's CAP_SYS_ADMIN; validate refuses it, naming the option.
func TestBuilderNeedsUserns(t *testing.T) {
	s := Spec{ID: "builder-host", Rootfs: "/nonexistent", Builder: true}
	err := s.validate()
	if err == nil || !strings.Contains(err.Error(), "builds_images") {
		t.Fatalf("Check = %v, want an error naming builds_images", err)
	}
}

// TestBuilderStepsNeverHoldSysAdmin: a building job's processes never
// hold CAP_SYS_ADMIN over the job's namespaces: its launcher (PID 1, in
// the job's user namespace) and its non-root steps have the default
// capability sets and the seccomp filter; its root steps hold every
// capability, CAP_SYS_ADMIN included, only as root of a user namespace
// of their own, nested in the job's (TestBuilderRootStepIsRootOfNestedUserns
// and TestBuilderRootStepCannotChangeJobsNamespaces).
func TestBuilderStepsNeverHoldSysAdmin(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "builder-caps", rangeA, false, rootfs(t))
	c := start(t, rt, Spec{ID: "builder-caps", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true})
	for _, tc := range []struct {
		name, script string
		p            Process
		want         []string
	}{
		{"launcher", `grep -E '^(Cap(Prm|Eff|Bnd)|Seccomp):' /proc/1/status`, Process{},
			[]string{"CapPrm:\t00000000a80405fb", "CapEff:\t00000000a80405fb", "CapBnd:\t00000000a80405fb", "Seccomp:\t2"}},
		{"non-root step", `grep -E '^(Cap(Prm|Eff|Bnd)|Seccomp):' /proc/self/status`, Process{User: "1000:1000"},
			[]string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t00000000a80405fb", "Seccomp:\t2"}},
		{"root step", `readlink /proc/self/ns/user; grep -E '^Seccomp:' /proc/self/status`, Process{},
			[]string{"Seccomp:\t2"}},
	} {
		exit, out, errOut := sh(t, c, tc.p, tc.script)
		if !exit.Success() {
			t.Fatalf("%s: %s: %s", tc.name, exit, errOut)
		}
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s: no %q in:\n%s", tc.name, want, out)
			}
		}
		if tc.name == "root step" && strings.Contains(out, nsOf(t, c, "user")) {
			t.Errorf("root step in the job's user namespace %s:\n%s", nsOf(t, c, "user"), out)
		}
	}
}

// TestBuilderSeccompProfile: the building profile allows what builders
// need and none of builderDenied; the default profile allows neither
// (the control).
func TestBuilderSeccompProfile(t *testing.T) {
	spec, err := ociSpec(&Spec{ID: "p", Rootfs: "/r", UserNS: "/ns", Builder: true}, "jobrun", "/files", "/init")
	if err != nil {
		t.Fatal(err)
	}
	def, err := ociSpec(&Spec{ID: "p", Rootfs: "/r", UserNS: "/ns"}, "jobrun", "/files", "/init")
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(s *specs.Spec, name string) bool {
		for _, r := range s.Linux.Seccomp.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
				return true
			}
		}
		return false
	}
	for _, n := range []string{"unshare", "setns", "mount", "umount2", "clone", "clone3", "fsopen", "move_mount"} {
		if !allowed(spec, n) {
			t.Errorf("building profile does not allow %s", n)
		}
		if allowed(def, n) {
			t.Errorf("default profile allows %s", n)
		}
	}
	for _, n := range builderDenied {
		if allowed(spec, n) {
			t.Errorf("building profile allows %s", n)
		}
	}
	if len(spec.Linux.MaskedPaths)+len(spec.Linux.ReadonlyPaths) != 0 || len(def.Linux.MaskedPaths) == 0 || len(def.Linux.ReadonlyPaths) == 0 {
		t.Errorf("masked/read-only paths: building %v %v, default %v %v", spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths, def.Linux.MaskedPaths, def.Linux.ReadonlyPaths)
	}
	if !slices.Equal(spec.Process.Capabilities.Bounding, def.Process.Capabilities.Bounding) {
		t.Errorf("capabilities: building %v, default %v", spec.Process.Capabilities.Bounding, def.Process.Capabilities.Bounding)
	}
}

// TestPrepareBuilderCompilesBuildersFilter: after PrepareBuilder, the
// filter of a building container (the profile the agent starts it with:
// its own user namespace, the 32-bit tables) is compiled ahead, and the
// container loads it instead of having libcontainer compile it in its
// setup. Control: before PrepareBuilder, the Runtime has no such filter.
func TestPrepareBuilderCompilesBuildersFilter(t *testing.T) {
	rt, _ := newRuntime(t)
	ns, rfs := jobNS(t, rt, "prep-builder", rangeA, false, rootfs(t))
	s := Spec{ID: "prep-builder", Rootfs: rfs, UserNS: ns.UserPath(), Builder: true, Compat32: true}
	spec, err := ociSpec(&s, rt.cgroups, rt.files, rt.launcher)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := libcontainerConfig(&s, spec)
	if err != nil {
		t.Fatal(err)
	}
	key, err := json.Marshal(cfg.Seccomp)
	if err != nil {
		t.Fatal(err)
	}
	entry := func() *filterEntry {
		rt.filters.mu.Lock()
		defer rt.filters.mu.Unlock()
		return rt.filters.entries[string(key)]
	}
	if entry() != nil {
		t.Fatal("the builder's filter is compiled before PrepareBuilder")
	}
	rt.PrepareBuilder()
	e := entry()
	if e == nil {
		t.Fatal("PrepareBuilder did not compile a building container's filter")
	}
	<-e.done
	if e.err != nil || e.filter == nil {
		t.Fatalf("compiling the builder's filter: %v", e.err)
	}
	rt.waitFilters = false
	if c := start(t, rt, s); c.cfg.Seccomp != nil {
		t.Error("the building container's setup compiled its filter: not the one compiled ahead")
	}
}
