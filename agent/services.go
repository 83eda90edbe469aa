package agent

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/jobs"
)

// defaultServiceTimeout is how long a service gets to accept connections
// on its port unless Runner.ServiceTimeout says otherwise.
const defaultServiceTimeout = time.Minute

// service is one running service container and its main process.
type service struct {
	spec jobs.Service
	c    *sandbox.Container
	out  io.WriteCloser
	done chan struct{} // closed when the main process has ended
	exit *sandbox.Exit
	err  error
}

// startServices starts each of j's services as a container of its own in
// the job's network namespace, running its image's entrypoint with the
// service's command (or the image's cmd). Their output goes to the job's
// log as the pseudo-step "service NAME", kept apart from the steps'. Each
// is stopped and destroyed by td.
func (r *Runner) startServices(ctx context.Context, j *Job, ws string, ns *sandbox.Namespaces, n *network.Net, l *jobLog, td *teardown) ([]*service, error) {
	var svcs []*service
	for _, s := range j.Services {
		img, err := r.resolveImage(ctx, j, s.Image, ws)
		if err != nil {
			return svcs, fmt.Errorf("service %s: %w", s.Name, err)
		}
		r.forgetWorkspaceImage(img, ws, td)
		id := Instance(j.ID + "-" + s.Name)
		// In the job's user namespace, with its range: a service is
		// part of the job.
		snap, err := r.Images.SnapshotFor(ctx, img, id, ns.Userns())
		if err != nil {
			return svcs, fmt.Errorf("service %s: %w", s.Name, err)
		}
		td.add(snap.Remove)
		args := slices.Concat(img.Config.Entrypoint, img.Config.Cmd)
		if len(s.Command) > 0 {
			args = slices.Concat(img.Config.Entrypoint, s.Command)
		}
		if len(args) == 0 {
			return svcs, fmt.Errorf("service %s (%s): %w", s.Name, s.Image, errNoCommand)
		}
		spec := serviceSpec(j, s, id, img.Config, hostParts{Rootfs: snap.Rootfs(), UserNS: ns.UserPath()}, r.CACerts)
		joinNetwork(&spec, n, j.Services)
		c, err := r.Sandbox.Start(ctx, spec)
		if err != nil {
			return svcs, fmt.Errorf("service %s: %w", s.Name, err)
		}
		sv := &service{spec: s, c: c, out: l.output("service "+s.Name, "stdout"), done: make(chan struct{})}
		td.add(sv.stop)
		svcs = append(svcs, sv)
		go func() {
			defer close(sv.done)
			// The process runs until the container is destroyed; the
			// job's context does not stop it, teardown does.
			sv.exit, sv.err = c.Exec(context.WithoutCancel(ctx), sandbox.Process{Args: args, Stdout: sv.out, Stderr: sv.out})
		}()
		l.notice("", fmt.Sprintf("service %s: %s started", s.Name, s.Image))
	}
	return svcs, nil
}

// stop destroys the service's container, which ends its process, and
// flushes its output.
func (sv *service) stop() error {
	err := sv.c.Destroy()
	<-sv.done
	sv.out.Close()
	return err
}

// waitServices waits until every service with a port accepts connections
// on it at localhost in the job's namespace, each within timeout. A
// service that exits first, or does not listen in time, fails the job.
func (r *Runner) waitServices(ctx context.Context, svcs []*service, n *network.Net, l *jobLog) error {
	timeout := r.ServiceTimeout
	if timeout <= 0 {
		timeout = defaultServiceTimeout
	}
	for _, sv := range svcs {
		port := sv.spec.Port
		if port == 0 {
			continue
		}
		begin := time.Now()
		deadline := begin.Add(timeout)
		for delay := 10 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
			err := n.Probe(ctx, port)
			if err == nil {
				l.notice("", fmt.Sprintf("service %s: ready on port %d (%s)", sv.spec.Name, port, units.FormatDuration(time.Since(begin).Round(time.Millisecond))))
				break
			}
			select {
			case <-sv.done:
				if sv.err != nil {
					return fmt.Errorf("service %s: %w", sv.spec.Name, sv.err)
				}
				return fmt.Errorf("service %s: %s before it accepted connections on port %d (its output is in the log as \"service %s\")",
					sv.spec.Name, sv.exit, port, sv.spec.Name)
			case <-ctx.Done():
				return fmt.Errorf("service %s: waiting for port %d: %w", sv.spec.Name, port, ctx.Err())
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s: not accepting connections on port %d after %s: %v", sv.spec.Name, port, units.FormatDuration(timeout), err)
			}
			time.Sleep(delay)
		}
	}
	return nil
}

// addServiceUsage adds what the services consumed to the job's usage: a
// job's limits bound its services too, and so its usage counts them. The
// peaks are added, an upper bound of the peak of the sum. It also reports
// in the job's log each service that ended while the job ran, and why:
// "out of memory (limit 64 MiB)". It must run before teardown.
func addServiceUsage(svcs []*service, u *Usage, l *jobLog) {
	for _, sv := range svcs {
		select {
		case <-sv.done:
			why := "ended"
			switch {
			case sv.err != nil:
				why = sv.err.Error()
			case sv.exit != nil:
				why = sv.exit.String()
			}
			l.notice("", fmt.Sprintf("service %s: ended while the job ran: %s", sv.spec.Name, why))
		default:
		}
		su, err := sv.c.Stats()
		if err != nil {
			l.notice("", fmt.Sprintf("service %s: usage unknown: %v", sv.spec.Name, err))
			continue
		}
		u.CPU += su.CPU
		u.PeakMemory += su.MemoryPeak
		u.PeakPids += su.PidsPeak
	}
}
