package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Namespaces are a job's user namespace and, for a bridge network, a
// network namespace owned by it, held by nsfs bind mounts in the run dir:
//
//	<run>/ns/<id>/user   the user namespace (Spec.UserNS)
//	<run>/ns/<id>/net    its network namespace, if asked for
//	<run>/ns/<id>.lock   held while they live
//
// The job's containers (its steps' and its services') join them by path,
// so they share one mapping and one network; image and cache mounts are
// idmapped with Userns. Close takes them down once nothing uses them;
// Runtime.Cleanup removes those whose holder died.
type Namespaces struct {
	rt   *Runtime
	dir  string
	lock *lockfile.Lock
	u    *idmap.Userns
	net  bool
}

// NewNamespaces makes the namespaces of the job id (a container id, see
// Spec.ID): a user namespace mapping container ids 0 to m.Size-1 onto m's
// host ids and, if net, a network namespace owned by it (loopback down:
// whoever configures the network brings it up). On error nothing is left.
func (rt *Runtime) NewNamespaces(id string, m idmap.Mapping, net bool) (_ *Namespaces, err error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("namespaces %q: want 1 to 63 letters, digits or \"-\", not starting or ending with \"-\"", id)
	}
	base := filepath.Join(rt.run, "ns")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("namespaces of %s: %w", id, err)
	}
	ns := &Namespaces{rt: rt, dir: filepath.Join(base, id), net: net}
	if ns.lock, err = lockfile.TryAcquire(ns.dir + ".lock"); err != nil {
		return nil, fmt.Errorf("namespaces of %s: in use: %w", id, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ns.Close())
		}
	}()
	if err := removeNamespaces(ns.dir); err != nil { // left by a dead process
		return nil, fmt.Errorf("namespaces of %s: %w", id, err)
	}
	if err := os.Mkdir(ns.dir, 0o700); err != nil {
		return nil, fmt.Errorf("namespaces of %s: %w", id, err)
	}
	var netf *os.File
	if net {
		ns.u, netf, err = idmap.NewUsernsNet(m)
	} else {
		ns.u, err = idmap.NewUserns(m)
	}
	if err != nil {
		return nil, fmt.Errorf("namespaces of %s: %w", id, err)
	}
	if netf != nil {
		defer netf.Close()
		if err := bindNS(fmt.Sprintf("/proc/self/fd/%d", netf.Fd()), ns.NetPath()); err != nil {
			return nil, fmt.Errorf("namespaces of %s: %w", id, err)
		}
	}
	if err := bindNS(ns.u.Path(), ns.UserPath()); err != nil {
		return nil, fmt.Errorf("namespaces of %s: %w", id, err)
	}
	rt.mappings.Store(ns.UserPath(), m)
	return ns, nil
}

// knownMapping spares libcontainer reading the mapping of the user
// namespace at path (a process forked into it, 1.5 ms) when it is one
// NewNamespaces made: spec then asks for a user namespace with that
// mapping, and the returned func turns the converted config into what
// joining path gives (the namespace's path, idmapped mounts through it),
// as specconv would have made it. For another path it changes nothing.
func (rt *Runtime) knownMapping(spec *specs.Spec, path string) func(*configs.Config) {
	v, ok := rt.mappings.Load(path)
	if path == "" || !ok {
		return func(*configs.Config) {}
	}
	m := v.(idmap.Mapping)
	for i, n := range spec.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			spec.Linux.Namespaces[i].Path = ""
		}
	}
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.UID, Size: m.Size}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GID, Size: m.Size}}
	return func(cfg *configs.Config) {
		for i, n := range cfg.Namespaces {
			if n.Type == configs.NEWUSER {
				cfg.Namespaces[i].Path = path
			}
		}
		for _, mnt := range cfg.Mounts {
			if mnt.IDMapping != nil {
				mnt.IDMapping.UserNSPath = path
				mnt.IDMapping.UIDMappings, mnt.IDMapping.GIDMappings = nil, nil
			}
		}
	}
}

// bindNS bind-mounts the namespace file src (/proc/self/fd/N of an open
// one) on a new file at target.
func bindNS(src, target string) error {
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		return fmt.Errorf("bind namespace: %w", err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("bind namespace on %s: %w", target, err)
	}
	return nil
}

// UserPath is the user namespace's nsfs bind mount: Spec.UserNS. It is
// "" for nil Namespaces (a job without a user namespace).
func (ns *Namespaces) UserPath() string {
	if ns == nil {
		return ""
	}
	return filepath.Join(ns.dir, "user")
}

// NetPath is the network namespace's nsfs bind mount, or "" if there is
// none: Spec.NetNS once the network is configured in it.
func (ns *Namespaces) NetPath() string {
	if ns == nil || !ns.net {
		return ""
	}
	return filepath.Join(ns.dir, "net")
}

// Userns is an open handle of the user namespace, for idmapped mounts;
// valid until Close. It is nil for nil Namespaces.
func (ns *Namespaces) Userns() *idmap.Userns {
	if ns == nil {
		return nil
	}
	return ns.u
}

// Mapping is the user namespace's id mapping.
func (ns *Namespaces) Mapping() idmap.Mapping { return ns.u.Mapping() }

// Close unmounts and removes the namespaces' files; they go once nothing
// else (a container, a mount) holds them. Calling it again does nothing.
func (ns *Namespaces) Close() error {
	if ns == nil || ns.lock == nil {
		return nil
	}
	ns.rt.mappings.Delete(ns.UserPath())
	err := removeNamespaces(ns.dir)
	if err == nil {
		os.Remove(ns.dir + ".lock") // while still holding it, see lockfile.Release
	}
	err = errors.Join(err, ns.u.Close(), ns.lock.Release())
	ns.lock, ns.u = nil, nil
	if err != nil {
		return fmt.Errorf("close namespaces of %s: %w", filepath.Base(ns.dir), err)
	}
	return nil
}

// removeNamespaces unmounts the nsfs binds in dir and removes it; a
// missing dir is fine.
func removeNamespaces(dir string) error {
	for _, n := range []string{"user", "net"} {
		p := filepath.Join(dir, n)
		if err := mount.Unmount(p); err != nil {
			return err
		}
		if mount.IsMountpoint(p) {
			return fmt.Errorf("%s is still mounted", p)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return nil
}

// cleanupNamespaces removes the namespaces of dead processes in the run
// dir run.
func (rt *Runtime) cleanupNamespaces(ctx context.Context, run string) error {
	return lockfile.Sweep(ctx, filepath.Join(run, "ns"), func(dir string, l *lockfile.Lock) error {
		defer l.Release()
		if err := removeNamespaces(dir); err != nil {
			return fmt.Errorf("sandbox cleanup: namespaces %s: %w", filepath.Base(dir), err)
		}
		os.Remove(dir + ".lock")
		rt.log.Info("removed namespaces left by a dead process", "id", filepath.Base(dir))
		return nil
	})
}
