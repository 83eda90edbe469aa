package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/jobs"
)

// checkNetwork refuses what the job asks of the network that this runner
// may not or cannot give, before anything is made.
func (r *Runner) checkNetwork(j *jobs.Job) error {
	switch {
	case j.Network == jobs.NetworkHost && !r.AllowHostNetwork:
		return fmt.Errorf("job %q: network = \"host\" is not allowed on this agent: it would see the host's own services; "+
			"allow it in the agent config with network { allow_host = true }", j.Name)
	case j.Network == jobs.NetworkBridge && r.Network == nil:
		return fmt.Errorf("job %q: network = \"bridge\": this runner has no bridge networking configured", j.Name)
	case len(j.Services) > 0 && j.Network != jobs.NetworkBridge:
		return fmt.Errorf("job %q: service containers need network = \"bridge\" (the job has %q)", j.Name, j.Network)
	}
	return nil
}

// jobNet is a job's bridge network being made in the background while the
// workspace, image and caches are prepared.
type jobNet struct {
	done chan struct{}
	net  *network.Net
	err  error
}

// startNetwork starts making j's bridge network, if it has one, and adds
// its teardown (after whatever is added later, so after the containers
// that use it are gone).
//
// In a user namespace (ns set) the network is configured in the network
// namespace ns holds, owned by the job's user namespace, so that the
// job's root may mount its sysfs.
func (r *Runner) startNetwork(ctx context.Context, j *Job, ns *sandbox.Namespaces, td *teardown) *jobNet {
	if j.Network != jobs.NetworkBridge {
		return nil
	}
	jn := &jobNet{done: make(chan struct{})}
	go func() {
		defer close(jn.done)
		if p := ns.NetPath(); p != "" {
			jn.net, jn.err = r.Network.SetupIn(ctx, j.instance, p)
			return
		}
		jn.net, jn.err = r.Network.Setup(ctx, j.instance)
	}()
	td.add(func() error {
		<-jn.done
		if jn.net == nil {
			return nil
		}
		return jn.net.Teardown()
	})
	return jn
}

// wait returns the network once made.
func (jn *jobNet) wait() (*network.Net, error) {
	<-jn.done
	if jn.err != nil {
		return nil, jn.err
	}
	return jn.net, nil
}

// joinNetwork puts the job's container (or a service's) on n: its
// namespace, its DNS, and the services' names for localhost.
func joinNetwork(s *sandbox.Spec, n *network.Net, services []jobs.Service) {
	if n == nil {
		return
	}
	// The sandbox joins the namespace rather than making one.
	s.Network, s.NetNS, s.ResolvConf = "none", n.Path, n.ResolvConf
	for _, svc := range services {
		s.Hosts = append(s.Hosts, "127.0.0.1\t"+svc.Name)
	}
}

var errNoCommand = errors.New("no command: the image has no entrypoint or cmd and the service sets no command")
