package jobs

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/hashicorp/hcl/v2"

	"github.com/jobrun/jobrun/internal/units"
)

// pending is an evaluated job whose needs are not yet resolved.
type pending struct {
	job   *Job
	index int // declaration order, for a stable topological order
	needs []item
}

// expand evaluates every job for every matrix combination, then resolves
// needs and orders the jobs.
func (p *parser) expand(f *File, raws []*rawJob) {
	var all []*pending
	bases := map[string]bool{}
	for _, rj := range raws {
		bases[rj.name] = true
		m := p.matrix(rj)
		if m.broken {
			// Check the rest of the job once; its values are unknown.
			p.evalJob(rj, m, nil)
			continue
		}
		if len(all)+len(m.combos) > maxJobs {
			p.errorf(rj.b.DefRange, "Too many jobs",
				"With job %q the file expands to more than %d jobs; split the workflow or shrink its matrices.", rj.name, maxJobs)
			break
		}
		for _, combo := range m.combos {
			if pj := p.evalJob(rj, m, combo); pj != nil {
				pj.index = len(all)
				all = append(all, pj)
			}
		}
	}
	p.order(f, all, bases)
}

// evalJob evaluates rj for one combination. It returns nil when the matrix
// is broken, since such a job cannot be planned.
func (p *parser) evalJob(rj *rawJob, m matrix, combo map[string]string) *pending {
	e := newEvaluator(p, m.keys, m.vars(combo))
	j := &Job{
		Name:      matrixName(rj.name, combo),
		Base:      rj.name,
		Matrix:    combo,
		Timeout:   DefaultTimeout,
		Network:   NetworkBridge,
		DeclRange: rj.b.DefRange,
	}
	j.ID = JobID(j.Name)
	pj := &pending{job: j}
	a := rj.attrs
	if a["image"] == nil {
		p.errorf(rj.b.DefRange, "Missing image",
			"Job %q has no image; set image = \"...\" in the job or in the defaults block.", rj.name)
	} else if s, ok := e.str(a["image"].Expr, "image"); ok {
		j.Image = s
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\n") {
			p.errorf(a["image"].Expr.Range(), "Invalid image", "image %q is not an image reference, like \"golang:1.26\".", s)
		}
	}
	if x := a["pull"]; x != nil {
		s, _ := e.oneOf(x.Expr, "pull", string(PullAlways), string(PullIfMissing), string(PullNever))
		j.Pull = Pull(s)
	}
	if x := a["image_credentials"]; x != nil {
		if s, ok := e.str(x.Expr, "image_credentials"); ok {
			if err := checkEnvName(s); err != nil {
				p.errorf(x.Expr.Range(), "Invalid secret name", "image_credentials: %s", err)
			} else {
				j.ImageCredentials = s
			}
		}
	}
	if x := a["agent"]; x != nil {
		items, _ := e.strList(x.Expr, "agent")
		j.Agent = strs(items)
	}
	if x := a["needs"]; x != nil {
		pj.needs, _ = e.strList(x.Expr, "needs")
	}
	if x := a["timeout"]; x != nil {
		j.Timeout = p.duration(e, x, "timeout", DefaultTimeout)
	}
	for _, x := range rj.envs {
		env, _ := e.strMap(x.Expr, "env", checkEnvName)
		if len(env) > 0 && j.Env == nil {
			j.Env = map[string]string{}
		}
		for k, v := range env {
			j.Env[k] = v
		}
	}
	if x := a["network"]; x != nil {
		s, _ := e.oneOf(x.Expr, "network", string(NetworkNone), string(NetworkHost), string(NetworkBridge))
		if s != "" {
			j.Network = Network(s)
		}
	}
	if x := a["secrets"]; x != nil {
		items, _ := e.strList(x.Expr, "secrets")
		for _, it := range items {
			if err := checkEnvName(it.s); err != nil {
				p.errorf(it.rng, "Invalid secret name", "secrets: %s", err)
				continue
			}
			j.Secrets = append(j.Secrets, it.s)
		}
	}
	if x := a["concurrency"]; x != nil {
		j.Concurrency, _ = e.str(x.Expr, "concurrency")
	}
	if x := a["builds_images"]; x != nil {
		j.BuildsImages, _ = e.boolean(x.Expr, "builds_images")
	}
	j.Resources = p.resources(e, rj.resources)
	for _, c := range rj.caches {
		if cache, ok := p.cache(e, c); ok {
			j.Caches = append(j.Caches, cache)
		}
	}
	p.checkBuilderCaches(j)
	for _, s := range rj.steps {
		j.Steps = append(j.Steps, p.step(e, s))
	}
	if rj.artifacts != nil {
		j.Artifacts = p.artifacts(e, rj.artifacts)
	}
	for _, s := range rj.services {
		j.Services = append(j.Services, p.service(e, s))
	}
	if m.broken {
		return nil
	}
	return pj
}

func strs(items []item) []string {
	var s []string
	for _, it := range items {
		s = append(s, it.s)
	}
	return s
}

func checkEnvName(k string) error {
	if !envNameRe.MatchString(k) {
		return fmt.Errorf("%q is not a valid variable name: use letters, digits and '_', not starting with a digit", k)
	}
	return nil
}

func (p *parser) duration(e *evaluator, a *hcl.Attribute, what string, fallback time.Duration) time.Duration {
	s, ok := e.str(a.Expr, what)
	if !ok {
		return fallback
	}
	d, err := units.ParseDuration(s)
	if err != nil {
		p.errorf(a.Expr.Range(), "Invalid duration", "%s: %s.", what, err)
		return fallback
	}
	return d
}

func (p *parser) resources(e *evaluator, attrs hcl.Attributes) Resources {
	var r Resources
	if a := attrs["cpus"]; a != nil {
		r.CPUs, _ = e.number(a.Expr, "cpus", 1024, false)
	}
	if a := attrs["memory"]; a != nil {
		if s, ok := e.str(a.Expr, "memory"); ok {
			n, err := units.ParseSize(s)
			if err != nil {
				p.errorf(a.Expr.Range(), "Invalid size", "memory: %s.", err)
			}
			r.Memory = n
		}
	}
	if a := attrs["pids"]; a != nil {
		n, _ := e.number(a.Expr, "pids", 1<<22, true)
		r.Pids = int64(n)
	}
	return r
}

func (p *parser) step(e *evaluator, b block) Step {
	s := Step{Name: b.name, If: IfSuccess, DeclRange: b.b.DefRange}
	if a := b.attrs["run"]; a == nil {
		p.errorf(b.b.DefRange, "Missing run", "Step %q has no run; give it the commands to run, like run = \"make test\".", b.name)
	} else if run, ok := e.str(a.Expr, "run"); ok {
		s.Run = run
		if strings.TrimSpace(run) == "" {
			p.errorf(a.Expr.Range(), "Empty run", "Step %q has an empty run.", b.name)
		}
	}
	if a := b.attrs["if"]; a != nil {
		if v, ok := e.oneOf(a.Expr, "if", string(IfSuccess), string(IfFailure), string(IfAlways)); ok {
			s.If = StepIf(v)
		}
	}
	if a := b.attrs["allow_failure"]; a != nil {
		s.AllowFailure, _ = e.boolean(a.Expr, "allow_failure")
	}
	if a := b.attrs["workdir"]; a != nil {
		if dir, ok := e.str(a.Expr, "workdir"); ok {
			s.Workdir = dir
			if dir == "" || strings.ContainsRune(dir, 0) {
				p.errorf(a.Expr.Range(), "Invalid workdir", "workdir must be a directory path, relative to the workspace or absolute.")
			}
		}
	}
	return s
}

func (p *parser) artifacts(e *evaluator, b *block) *Artifacts {
	ar := &Artifacts{When: OnSuccess, DeclRange: b.b.DefRange}
	if a := b.attrs["paths"]; a == nil {
		p.errorf(b.b.DefRange, "Missing paths", `An artifacts block needs paths, like paths = ["bin/**"].`)
	} else {
		items, ok := e.strList(a.Expr, "paths")
		if ok && len(items) == 0 {
			p.errorf(a.Expr.Range(), "Empty paths", "List at least one path or glob, or remove the artifacts block.")
		}
		for _, it := range items {
			if err := checkRelGlob(it.s); err != nil {
				p.errorf(it.rng, "Invalid artifact path", "paths: %s.", err)
				continue
			}
			ar.Paths = append(ar.Paths, it.s)
		}
	}
	if a := b.attrs["when"]; a != nil {
		if v, ok := e.oneOf(a.Expr, "when", string(OnSuccess), string(OnFailure), string(Always)); ok {
			ar.When = When(v)
		}
	}
	if a := b.attrs["expire_in"]; a != nil {
		ar.ExpireIn = p.duration(e, a, "expire_in", 0)
	}
	if a := b.attrs["required"]; a != nil {
		ar.Required, _ = e.boolean(a.Expr, "required")
	}
	return ar
}

// checkRelGlob checks a glob of files inside the workspace.
func checkRelGlob(g string) error {
	switch {
	case g == "":
		return fmt.Errorf("empty pattern")
	case path.IsAbs(g):
		return fmt.Errorf("%q is absolute; paths are relative to the workspace", g)
	case g == ".." || strings.HasPrefix(g, "../") || strings.Contains(g, "/../") || strings.HasSuffix(g, "/.."):
		return fmt.Errorf("%q leaves the workspace", g)
	case !doublestar.ValidatePattern(g):
		return fmt.Errorf("invalid pattern %q: check its brackets and braces", g)
	}
	return nil
}

func (p *parser) service(e *evaluator, b block) Service {
	s := Service{Name: b.name, DeclRange: b.b.DefRange}
	if JobID(b.name) != b.name {
		p.errorf(b.b.LabelRanges[0], fmt.Sprintf("Invalid service name %q", b.name),
			"A service is reached by its name as a hostname: use lowercase letters, digits and inner '-'.")
	}
	if a := b.attrs["image"]; a == nil {
		p.errorf(b.b.DefRange, "Missing image", "Service %q has no image.", b.name)
	} else {
		s.Image, _ = e.str(a.Expr, "image")
	}
	if a := b.attrs["env"]; a != nil {
		s.Env, _ = e.strMap(a.Expr, "env", checkEnvName)
	}
	if a := b.attrs["command"]; a != nil {
		items, _ := e.strList(a.Expr, "command")
		s.Command = strs(items)
	}
	if a := b.attrs["port"]; a != nil {
		n, _ := e.number(a.Expr, "port", 65535, true)
		s.Port = int(n)
	}
	return s
}
