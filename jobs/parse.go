package jobs

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/robfig/cron/v3"
)

var (
	fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "workflow"}, {Type: "defaults"}, {Type: "job", LabelNames: []string{"name"}},
	}}
	workflowSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "on", LabelNames: []string{"event"}},
	}}
	triggerSchemas = map[TriggerKind]*hcl.BodySchema{
		OnPush:        {Attributes: []hcl.AttributeSchema{{Name: "branches"}}},
		OnPullRequest: {Attributes: []hcl.AttributeSchema{{Name: "branches"}}},
		OnTag:         {Attributes: []hcl.AttributeSchema{{Name: "tags"}}},
		OnCron:        {Attributes: []hcl.AttributeSchema{{Name: "schedule"}, {Name: "branch"}}},
	}
	jobSchema = &hcl.BodySchema{
		Attributes: attrs("image", "pull", "image_credentials", "agent", "needs", "timeout", "env", "network", "secrets", "concurrency", "builds_images"),
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "resources"}, {Type: "cache", LabelNames: []string{"name"}},
			{Type: "step", LabelNames: []string{"name"}}, {Type: "artifacts"}, {Type: "matrix"},
			{Type: "service", LabelNames: []string{"name"}},
		},
	}
	defaultsSchema = &hcl.BodySchema{
		Attributes: attrs("image", "pull", "image_credentials", "agent", "timeout", "env", "network", "secrets"),
		Blocks:     []hcl.BlockHeaderSchema{{Type: "resources"}, {Type: "cache", LabelNames: []string{"name"}}},
	}
	resourcesSchema = &hcl.BodySchema{Attributes: attrs("cpus", "memory", "pids")}
	cacheSchema     = &hcl.BodySchema{Attributes: attrs("path", "key", "sharing")}
	stepSchema      = &hcl.BodySchema{Attributes: attrs("run", "if", "allow_failure", "workdir")}
	artifactsSchema = &hcl.BodySchema{Attributes: attrs("paths", "when", "expire_in", "required")}
	serviceSchema   = &hcl.BodySchema{Attributes: attrs("image", "env", "command", "port")}
)

func attrs(names ...string) []hcl.AttributeSchema {
	s := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		s[i] = hcl.AttributeSchema{Name: n}
	}
	return s
}

var (
	jobNameRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	envNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	cacheNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

// Limits that keep a hostile file from exhausting the parser.
const (
	maxNameLen      = 100
	maxCombinations = 256
	maxJobs         = 1000 // expanded
)

// parser holds the state of one Parse call.
type parser struct {
	filename string
	src      []byte
	diags    hcl.Diagnostics
}

// block is a decoded block: its header and its attributes by name.
type block struct {
	name  string
	b     *hcl.Block
	attrs hcl.Attributes
}

// rawJob is a job block with defaults applied, before evaluation.
type rawJob struct {
	block
	index     int
	envs      []*hcl.Attribute // defaults' first; the job's wins
	resources hcl.Attributes
	caches    []block
	steps     []block
	artifacts *block
	matrix    *block
	services  []block
}

// Load reads and parses the job file at path. See Parse.
func Load(path string) (*File, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return &File{Path: path}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read job file",
			Detail:   err.Error(),
		}}
	}
	return Parse(path, src)
}

// Parse parses src, the content of the job file filename. It reports every
// problem it finds as a diagnostic, and never panics. The returned File is
// never nil; when the diagnostics hold errors it may be incomplete and must
// not be run, but it still serves WriteDiagnostics.
func Parse(filename string, src []byte) (f *File, diags hcl.Diagnostics) {
	f = &File{Path: filename, src: src}
	defer func() {
		// A bug here must not take a server down with it.
		if r := recover(); r != nil {
			f.Jobs = nil
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  internalError,
				Detail:   fmt.Sprintf("jobrun could not read this file: %v. Please report this as a bug.", r),
			})
		}
	}()
	p := &parser{filename: filename, src: src}
	p.parse(f)
	return f, tidy(p.diags)
}

// internalError is the summary of the diagnostic for a parser bug.
const internalError = "Internal error"

func (p *parser) parse(f *File) {
	if diags := checkLimits(p.filename, p.src); diags.HasErrors() {
		p.add(diags)
		return
	}
	hf, diags := hclsyntax.ParseConfig(p.src, p.filename, hcl.InitialPos)
	p.add(diags)
	if diags.HasErrors() {
		// The rest would only repeat the syntax errors in other words.
		return
	}
	content, diags := hf.Body.Content(fileSchema)
	p.add(diags)

	var defaults *block
	var jobBlocks []*hcl.Block
	seen := map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "workflow":
			if p.once(seen, b) {
				f.Workflow = p.workflow(b)
			}
		case "defaults":
			if p.once(seen, b) {
				defaults = p.decode(b, defaultsSchema)
			}
		case "job":
			jobBlocks = append(jobBlocks, b)
		}
	}
	raws := p.rawJobs(jobBlocks, defaults)
	p.expand(f, raws)
}

// once reports whether b is the first block of its type, and complains if
// it is not.
func (p *parser) once(seen map[string]*hcl.Block, b *hcl.Block) bool {
	if first, dup := seen[b.Type]; dup {
		p.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", b.Type),
			"Only one %s block is allowed here; the first is at %s.", b.Type, first.DefRange)
		return false
	}
	seen[b.Type] = b
	return true
}

// decode checks b's body against schema; nested blocks are left to the
// caller through content.
func (p *parser) decode(b *hcl.Block, schema *hcl.BodySchema) *block {
	c, _ := p.content(b, schema)
	return &block{name: label(b), b: b, attrs: c.Attributes}
}

func (p *parser) content(b *hcl.Block, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	c, diags := b.Body.Content(schema)
	p.add(diags)
	return c, diags
}

func label(b *hcl.Block) string {
	if len(b.Labels) > 0 {
		return b.Labels[0]
	}
	return ""
}

func (p *parser) workflow(b *hcl.Block) Workflow {
	w := Workflow{DeclRange: b.DefRange}
	c, _ := p.content(b, workflowSchema)
	kinds := []string{string(OnPush), string(OnPullRequest), string(OnTag), string(OnCron)}
	seen := map[TriggerKind]*hcl.Block{}
	for _, ob := range c.Blocks {
		kind := TriggerKind(label(ob))
		if kind == OnManual {
			// It was accepted and did nothing: a manual run
			// (jobrun trigger, the API) always runs.
			p.errorf(ob.LabelRanges[0], `No on "manual" block`,
				"Manual runs (jobrun trigger, the API) always run, whatever the on blocks say, so this block would change nothing; remove it. An on block takes one of %s.", orList(kinds))
			continue
		}
		schema, known := triggerSchemas[kind]
		if !known {
			p.errorf(ob.LabelRanges[0], fmt.Sprintf("Unknown event %q", kind),
				"An on block takes one of %s.%s", orList(kinds), suggest(string(kind), kinds))
			continue
		}
		if first, dup := seen[kind]; dup && kind != OnCron {
			p.errorf(ob.DefRange, fmt.Sprintf("Duplicate on %q block", kind),
				"The first is at %s; merge the two.", first.DefRange)
			continue
		}
		seen[kind] = ob
		bc, _ := p.content(ob, schema)
		e := newEvaluator(p, nil, nil)
		t := Trigger{Kind: kind, DeclRange: ob.DefRange}
		if a := bc.Attributes["branches"]; a != nil {
			t.Branches = p.globs(e, a, "branches")
		}
		if a := bc.Attributes["tags"]; a != nil {
			t.Tags = p.globs(e, a, "tags")
		}
		if a := bc.Attributes["branch"]; a != nil {
			t.Branch, _ = e.str(a.Expr, "branch")
		}
		if kind == OnCron {
			t.Schedule, t.Cron = p.cron(e, ob, bc.Attributes["schedule"])
		}
		w.Triggers = append(w.Triggers, t)
	}
	return w
}

func (p *parser) globs(e *evaluator, a *hcl.Attribute, what string) []Glob {
	items, _ := e.strList(a.Expr, what)
	var globs []Glob
	for _, it := range items {
		g, err := NewGlob(it.s)
		if err != nil {
			p.errorf(it.rng, "Invalid glob", "%s: %s.", what, err)
			continue
		}
		globs = append(globs, g)
	}
	return globs
}

func (p *parser) cron(e *evaluator, b *hcl.Block, a *hcl.Attribute) (string, cron.Schedule) {
	if a == nil {
		p.errorf(b.DefRange, "Missing schedule", `A cron trigger needs a schedule, like schedule = "0 3 * * *".`)
		return "", nil
	}
	s, ok := e.str(a.Expr, "schedule")
	if !ok {
		return "", nil
	}
	sched, err := parseCron(s)
	if err != nil {
		p.errorf(a.Expr.Range(), "Invalid cron schedule",
			"%s. Write five fields (minute hour day-of-month month day-of-week), like \"0 3 * * *\", or a descriptor like @daily.", err)
		return s, nil
	}
	return s, sched
}

// parseCron parses a standard cron expression, turning a panic of the
// cron parser on odd input into an error.
func parseCron(s string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("invalid cron expression %q", s)
		}
	}()
	if strings.HasPrefix(strings.TrimSpace(s), "TZ=") || strings.HasPrefix(strings.TrimSpace(s), "CRON_TZ=") {
		// Time zones are the scheduler's setting, and loading one
		// reads the host's zone files.
		return nil, fmt.Errorf("time zone prefixes are not supported in %q", s)
	}
	return cron.ParseStandard(s)
}

// rawJobs decodes the job blocks' structure and applies defaults.
func (p *parser) rawJobs(blocks []*hcl.Block, defaults *block) []*rawJob {
	var dc []block
	var dres hcl.Attributes
	if defaults != nil {
		c, _ := defaults.b.Body.Content(defaultsSchema) // reported by decode
		dc, dres = p.caches(c.Blocks), hcl.Attributes{}
		seen := map[string]*hcl.Block{}
		for _, b := range c.Blocks {
			if b.Type == "resources" && p.once(seen, b) {
				dres = p.decode(b, resourcesSchema).attrs
			}
		}
	}
	names := map[string]*hcl.Block{}
	var raws []*rawJob
	for i, b := range blocks {
		name := label(b)
		if !p.checkName(b, "job", name) {
			continue
		}
		if first, dup := names[name]; dup {
			p.errorf(b.LabelRanges[0], fmt.Sprintf("Duplicate job %q", name), "A job named %q is already defined at %s.", name, first.DefRange)
			continue
		}
		names[name] = b
		raws = append(raws, p.rawJob(i, b, defaults, dc, dres))
	}
	return raws
}

func (p *parser) checkName(b *hcl.Block, what, name string) bool {
	switch {
	case len(name) > maxNameLen:
		p.errorf(b.LabelRanges[0], fmt.Sprintf("Invalid %s name", what), "A %s name may have at most %d characters.", what, maxNameLen)
	case !jobNameRe.MatchString(name):
		p.errorf(b.LabelRanges[0], fmt.Sprintf("Invalid %s name %q", what, name),
			"A %s name may use letters, digits, '_', '.' and '-', and starts with a letter, digit or '_'.", what)
	default:
		return true
	}
	return false
}

func (p *parser) rawJob(i int, b *hcl.Block, defaults *block, dcaches []block, dres hcl.Attributes) *rawJob {
	c, _ := p.content(b, jobSchema)
	rj := &rawJob{block: block{name: label(b), b: b, attrs: hcl.Attributes{}}, index: i, resources: hcl.Attributes{}}
	if defaults != nil {
		for k, a := range defaults.attrs {
			rj.attrs[k] = a
		}
		if a := defaults.attrs["env"]; a != nil {
			rj.envs = append(rj.envs, a)
		}
	}
	for k, a := range c.Attributes {
		rj.attrs[k] = a
	}
	if a := c.Attributes["env"]; a != nil {
		rj.envs = append(rj.envs, a)
	}
	for k, a := range dres {
		rj.resources[k] = a
	}
	seen := map[string]*hcl.Block{}
	for _, nb := range c.Blocks {
		switch nb.Type {
		case "resources":
			if p.once(seen, nb) {
				for k, a := range p.decode(nb, resourcesSchema).attrs {
					rj.resources[k] = a
				}
			}
		case "artifacts":
			if p.once(seen, nb) {
				rj.artifacts = p.decode(nb, artifactsSchema)
			}
		case "matrix":
			if p.once(seen, nb) {
				attrs, diags := nb.Body.JustAttributes()
				p.add(diags)
				rj.matrix = &block{b: nb, attrs: attrs}
			}
		}
	}
	rj.caches = mergeCaches(dcaches, p.caches(c.Blocks))
	rj.steps = p.named(c.Blocks, "step", stepSchema)
	rj.services = p.named(c.Blocks, "service", serviceSchema)
	if len(rj.steps) == 0 && !hasBlock(c.Blocks, "step") {
		p.errorf(b.DefRange, "Missing step", "Job %q has no step; add at least one, like step \"test\" { run = \"make test\" }.", rj.name)
	}
	return rj
}

func hasBlock(blocks hcl.Blocks, typ string) bool {
	for _, b := range blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

// named decodes the labelled blocks of type typ, reporting duplicate names.
func (p *parser) named(blocks hcl.Blocks, typ string, schema *hcl.BodySchema) []block {
	var out []block
	seen := map[string]*hcl.Block{}
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		name := label(b)
		if strings.TrimSpace(name) == "" || strings.ContainsFunc(name, unicode.IsControl) || len(name) > maxNameLen {
			p.errorf(b.LabelRanges[0], fmt.Sprintf("Invalid %s name", typ),
				"A %s name is non-empty, printable and at most %d characters long.", typ, maxNameLen)
			continue
		}
		if first, dup := seen[name]; dup {
			p.errorf(b.LabelRanges[0], fmt.Sprintf("Duplicate %s %q", typ, name), "A %s named %q is already defined at %s.", typ, name, first.DefRange)
			continue
		}
		seen[name] = b
		out = append(out, *p.decode(b, schema))
	}
	return out
}

func (p *parser) caches(blocks hcl.Blocks) []block {
	var out []block
	for _, b := range p.named(blocks, "cache", cacheSchema) {
		if !cacheNameRe.MatchString(b.name) {
			p.errorf(b.b.LabelRanges[0], fmt.Sprintf("Invalid cache name %q", b.name),
				"A cache name may use letters, digits, '_', '.' and '-', and starts with a letter, digit or '_'.")
			continue
		}
		out = append(out, b)
	}
	return out
}

// mergeCaches puts a job's caches after the defaults', a job cache
// replacing the default cache of the same name.
func mergeCaches(defaults, own []block) []block {
	mine := map[string]bool{}
	for _, c := range own {
		mine[c.name] = true
	}
	var out []block
	for _, c := range defaults {
		if !mine[c.name] {
			out = append(out, c)
		}
	}
	return append(out, own...)
}
