package agent

import (
	"slices"
	"sort"
	"strconv"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/jobs"
)

// The containers' specs, made from the job, the image's config and what
// the Runner prepared on the host, with no I/O: the Runner starts what
// these describe (after joining the job's network, see joinNetwork).

// hostParts are what the Runner made on the host for a container, passed
// through to its spec as they are.
type hostParts struct {
	// Rootfs is the image's snapshot for the container.
	Rootfs string
	// UserNS is the job's user namespace, "" for none.
	UserNS string
	// Workspace (and whether to bind it idmapped) and Mounts (the
	// caches') are the job's container's only: a service has neither.
	Workspace      string
	WorkspaceIDMap bool
	Mounts         []sandbox.Mount
}

// jobSpec describes the job's container: the image's config merged with
// the job's settings, with what the Runner made for it (at). certs are the
// Runner's extra CA certificates (Runner.CACerts).
func jobSpec(j *Job, img image.Config, at hostParts, certs []byte) sandbox.Spec {
	return sandbox.Spec{
		ID:             j.instance,
		Hostname:       j.ID,
		Rootfs:         at.Rootfs,
		Workspace:      at.Workspace,
		WorkspaceIDMap: at.WorkspaceIDMap,
		UserNS:         at.UserNS,
		Mounts:         at.Mounts,
		Env:            withCAEnv(environment(img.Env, j), certs, j.Job.Env, j.Env, j.Secrets),
		CACerts:        certs,
		CABundles:      imageCABundles(img.Env),
		User:           img.User,
		Resources:      limits(j.Resources),
		Network:        string(j.Network),
		Builder:        j.BuildsImages,
		// Docker's profile allows the 32-bit system call tables
		// (i386 and x32 on amd64): 32-bit binaries run, as there.
		Compat32: true,
	}
}

// serviceSpec describes the container of j's service s, instance id (see
// Instance): the image's config with the service's env over it, in the
// job's user namespace and within the job's limits.
func serviceSpec(j *Job, s jobs.Service, id string, img image.Config, at hostParts, certs []byte) sandbox.Spec {
	return sandbox.Spec{
		ID:        id,
		Hostname:  s.Name,
		Rootfs:    at.Rootfs,
		Env:       withCAEnv(serviceEnv(img.Env, s.Env), certs, s.Env),
		CACerts:   certs,
		CABundles: imageCABundles(img.Env),
		User:      img.User,
		Cwd:       img.WorkingDir,
		UserNS:    at.UserNS,
		Compat32:  true, // as the job's container, and Docker
		// Each service is bounded by the job's limits, in a cgroup
		// of its own (v1 or v2, as the job's), and its usage is
		// added to the job's (see addServiceUsage).
		Resources: limits(j.Resources),
	}
}

// limits are a job's cgroup limits as the sandbox takes them.
func limits(r jobs.Resources) sandbox.Resources {
	return sandbox.Resources{CPUs: r.CPUs, Memory: r.Memory, Pids: r.Pids}
}

// environment is the image's environment, then CI's variables, the job's
// env, --env values and secrets, later ones winning.
func environment(imageEnv []string, j *Job) []string {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range imageEnv {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				set(kv[:i], kv[i+1:])
				break
			}
		}
	}
	set(jobs.VarCI, "true")
	set(jobs.VarJobrun, "true")
	set(jobs.VarJob, j.Name)
	set(jobs.VarRepo, j.Repo)
	set(jobs.VarRun, j.Run)
	set(jobs.VarAttempt, strconv.Itoa(j.Attempt))
	for _, m := range []map[string]string{j.Job.Env, j.Env, j.Secrets} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(k, m[k])
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}

// serviceEnv is the image's environment with the service's env over it.
func serviceEnv(imageEnv []string, env map[string]string) []string {
	out := slices.Clone(imageEnv)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = slices.DeleteFunc(out, func(e string) bool { return len(e) > len(k) && e[:len(k)+1] == k+"=" })
		out = append(out, k+"="+env[k])
	}
	return out
}
