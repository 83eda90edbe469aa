package jobs

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// parse parses src and fails the test on any diagnostic.
func parse(t *testing.T, src string) *File {
	t.Helper()
	f, diags := Parse("test.ci.hcl", []byte(src))
	if len(diags) > 0 {
		var b strings.Builder
		WriteDiagnostics(&b, diags, f, false)
		t.Fatalf("unexpected diagnostics:\n%s", b.String())
	}
	return f
}

// parseErr parses src and returns its diagnostics, failing if there is no
// error.
func parseErr(t *testing.T, src string) hcl.Diagnostics {
	t.Helper()
	_, diags := Parse("test.ci.hcl", []byte(src))
	if !diags.HasErrors() {
		t.Fatalf("no error for:\n%s", src)
	}
	return diags
}

func names(js []*Job) []string {
	var n []string
	for _, j := range js {
		n = append(n, j.Name)
	}
	return n
}

func TestMatrixExpansion(t *testing.T) {
	f := parse(t, `
job "build" {
  image = "golang:${matrix.go}"
  matrix {
    goos = ["linux", "windows"]
    go   = ["1.25", "1.26"]
  }
  env = { GOOS = "${matrix.goos}", FIXED = "x" }
  step "build" { run = "GOOS=${matrix.goos} go build -o bin/$NAME-${matrix.goos}" }
}
job "single" {
  image = "busybox"
  matrix { os = ["linux"] }
  step "x" { run = "echo ${matrix.os}" }
}`)
	wantNames := []string{
		"build (go=1.25, goos=linux)", "build (go=1.25, goos=windows)",
		"build (go=1.26, goos=linux)", "build (go=1.26, goos=windows)",
		"single (os=linux)",
	}
	if got := names(f.Jobs); !reflect.DeepEqual(got, wantNames) {
		t.Fatalf("jobs = %q, want %q", got, wantNames)
	}
	j := f.Jobs[1]
	if j.Base != "build" || !reflect.DeepEqual(j.Matrix, map[string]string{"go": "1.25", "goos": "windows"}) {
		t.Errorf("base %q matrix %v", j.Base, j.Matrix)
	}
	if j.Image != "golang:1.25" {
		t.Errorf("image = %q", j.Image)
	}
	if want := map[string]string{"GOOS": "windows", "FIXED": "x"}; !reflect.DeepEqual(j.Env, want) {
		t.Errorf("env = %v, want %v", j.Env, want)
	}
	// $NAME is the shell's and passes through untouched.
	if got, want := j.Steps[0].Run, "GOOS=windows go build -o bin/$NAME-windows"; got != want {
		t.Errorf("run = %q, want %q", got, want)
	}
	if f.Jobs[4].Steps[0].Run != "echo linux" {
		t.Errorf("single run = %q", f.Jobs[4].Steps[0].Run)
	}
	// The same file gives the same order every time.
	for i := 0; i < 20; i++ {
		g, _ := Parse("test.ci.hcl", f.src)
		if got := names(g.Jobs); !reflect.DeepEqual(got, wantNames) {
			t.Fatalf("run %d: order %q", i, got)
		}
	}
}

func TestMatrixLimit(t *testing.T) {
	var keys []string
	for i := 0; i < 9; i++ {
		keys = append(keys, fmt.Sprintf("k%d = [\"a\", \"b\"]", i)) // 512 combinations
	}
	diags := parseErr(t, `job "x" {
  image = "busybox"
  matrix {
    `+strings.Join(keys, "\n    ")+`
  }
  step "x" { run = "true" }
}`)
	if diags[0].Summary != "Matrix too large" || len(diags) != 1 {
		t.Fatalf("diags = %v", diags)
	}
}

func TestDAGOrder(t *testing.T) {
	f := parse(t, `
job "deploy" {
  image = "busybox"
  needs = ["package", "test"]
  step "x" { run = "true" }
}
job "package" {
  image = "busybox"
  needs = ["build"]
  step "x" { run = "true" }
}
job "test" {
  image = "busybox"
  step "x" { run = "true" }
}
job "build" {
  image = "busybox"
  needs = ["test"]
  matrix { os = ["linux", "darwin"] }
  step "x" { run = "true" }
}
job "lint" {
  image = "busybox"
  step "x" { run = "true" }
}`)
	want := []string{"test", "build (os=linux)", "build (os=darwin)", "package", "deploy", "lint"}
	if got := names(f.Jobs); !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %q, want %q", got, want)
	}
	pkg := f.Job("package")
	if want := []string{"build (os=linux)", "build (os=darwin)"}; !reflect.DeepEqual(pkg.Needs, want) {
		t.Errorf("package needs %q, want %q", pkg.Needs, want)
	}
	sel, err := f.Select("package")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"test", "build (os=linux)", "build (os=darwin)", "package"}; !reflect.DeepEqual(names(sel), want) {
		t.Errorf("Select(package) = %q, want %q", names(sel), want)
	}
	sel, err = f.Select("build (os=darwin)", "lint")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"test", "build (os=darwin)", "lint"}; !reflect.DeepEqual(names(sel), want) {
		t.Errorf("Select(build (os=darwin), lint) = %q, want %q", names(sel), want)
	}
	sel, err = f.Select("build")
	if err != nil || len(sel) != 3 {
		t.Errorf("Select(build) = %q, %v", names(sel), err)
	}
	if _, err := f.Select("packge"); err == nil || !strings.Contains(err.Error(), `Did you mean "package"?`) {
		t.Errorf("Select(packge) error = %v", err)
	}
}

func TestNeedsOneCombination(t *testing.T) {
	f := parse(t, `
job "build" {
  image = "busybox"
  matrix { os = ["linux", "darwin"] }
  step "x" { run = "true" }
}
job "test" {
  image = "busybox"
  matrix { os = ["linux", "darwin"] }
  needs = ["build (os=${matrix.os})"]
  step "x" { run = "true" }
}`)
	if got := f.Job("test (os=darwin)").Needs; !reflect.DeepEqual(got, []string{"build (os=darwin)"}) {
		t.Fatalf("needs = %q", got)
	}
}

func TestCycles(t *testing.T) {
	diags := parseErr(t, `
job "a" {
  image = "busybox"
  needs = ["b"]
  step "x" { run = "true" }
}
job "b" {
  image = "busybox"
  needs = ["a"]
  step "x" { run = "true" }
}`)
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "a -> b -> a") || diags[0].Subject.Start.Line != 4 {
		t.Fatalf("diags = %v", diags)
	}
	// Control: the same jobs without the back edge are fine.
	parse(t, `
job "a" {
  image = "busybox"
  needs = ["b"]
  step "x" { run = "true" }
}
job "b" {
  image = "busybox"
  step "x" { run = "true" }
}`)
}

func TestDefaultsInherited(t *testing.T) {
	f := parse(t, `
defaults {
  image   = "golang:1.26"
  agent   = ["linux"]
  timeout = "20m"
  network = "host"
  secrets = ["TOKEN"]
  env     = { A = "default", B = "default" }
  resources {
    cpus   = 2
    memory = "1GiB"
  }
  cache "gomod" { path = "/go/pkg/mod" }
  cache "tools" { path = "/tools" }
}
job "plain" {
  step "x" { run = "true" }
}
job "own" {
  image   = "busybox"
  timeout = "5m"
  env     = { B = "job", C = "job" }
  resources { memory = "2GiB" }
  cache "tools" {
    path    = "/opt/tools"
    sharing = "locked"
  }
  cache "extra" { path = "/extra" }
  step "x" { run = "true" }
}`)
	plain, own := f.Job("plain"), f.Job("own")
	if plain.Image != "golang:1.26" || plain.Timeout != 20*time.Minute || plain.Network != NetworkHost ||
		!reflect.DeepEqual(plain.Agent, []string{"linux"}) || !reflect.DeepEqual(plain.Secrets, []string{"TOKEN"}) {
		t.Errorf("plain = %+v", plain)
	}
	if plain.Resources != (Resources{CPUs: 2, Memory: 1 << 30}) {
		t.Errorf("plain resources = %+v", plain.Resources)
	}
	if own.Image != "busybox" || own.Timeout != 5*time.Minute {
		t.Errorf("own image %q timeout %v", own.Image, own.Timeout)
	}
	if want := map[string]string{"A": "default", "B": "job", "C": "job"}; !reflect.DeepEqual(own.Env, want) {
		t.Errorf("own env = %v, want %v", own.Env, want)
	}
	if own.Resources != (Resources{CPUs: 2, Memory: 2 << 30}) {
		t.Errorf("own resources = %+v", own.Resources)
	}
	var caches []string
	for _, c := range own.Caches {
		caches = append(caches, c.Name+":"+c.Path+":"+string(c.Sharing))
	}
	if want := []string{"gomod:/go/pkg/mod:shared", "tools:/opt/tools:locked", "extra:/extra:shared"}; !reflect.DeepEqual(caches, want) {
		t.Errorf("own caches = %q, want %q", caches, want)
	}
}

func TestDefaultValues(t *testing.T) {
	f := parse(t, `
job "x" {
  image = "busybox"
  step "x" { run = "true" }
  artifacts { paths = ["a"] }
}`)
	j := f.Jobs[0]
	if j.Timeout != DefaultTimeout || j.Network != NetworkBridge || j.Steps[0].If != IfSuccess ||
		j.Artifacts.When != OnSuccess || j.Artifacts.ExpireIn != 0 || j.ID != "x" || j.Matrix != nil {
		t.Errorf("defaults: %+v", j)
	}
	if j.DeclRange.Start.Line != 2 || j.DeclRange.Filename != "test.ci.hcl" {
		t.Errorf("DeclRange = %v", j.DeclRange)
	}
}

func TestFullSchema(t *testing.T) {
	f := parse(t, `
workflow {
  on "push"         { branches = ["main", "release/*"] }
  on "pull_request" { branches = ["**"] }
  on "tag"          { tags = ["v*"] }
  on "cron" {
    schedule = "0 3 * * *"
    branch   = "main"
  }
  on "cron"   { schedule = "@hourly" }
}
job "all" {
  image       = "golang:1.26"
  agent       = ["linux", "amd64"]
  timeout     = "1h30m"
  network     = "bridge"
  secrets     = ["A", "B_2"]
  concurrency = "deploy-${matrix.env}"
  matrix { env = ["prod"] }
  resources {
    cpus   = 1.5
    memory = "512MiB"
    pids   = 100
  }
  cache "gomod" {
    path    = "/go/pkg/mod"
    key     = "${matrix.env}-${hashfiles("go.sum", "**/go.sum")}"
    sharing = "private"
  }
  service "db" {
    image   = "postgres:16"
    env     = { POSTGRES_PASSWORD = "x" }
    command = ["postgres", "-c", "fsync=off"]
    port    = 5432
  }
  step "a" {
    run           = "make"
    if            = "always"
    allow_failure = true
    workdir       = "sub/dir"
  }
  step "b" {
    run = "cleanup"
    if  = "failure"
  }
  artifacts {
    paths     = ["bin/**", "report.xml"]
    when      = "on_failure"
    expire_in = "7d"
    required  = true
  }
}`)
	j := f.Jobs[0]
	if j.Concurrency != "deploy-prod" || j.Network != NetworkBridge || j.Timeout != 90*time.Minute {
		t.Errorf("job: %+v", j)
	}
	if j.Resources != (Resources{CPUs: 1.5, Memory: 512 << 20, Pids: 100}) {
		t.Errorf("resources = %+v", j.Resources)
	}
	c := j.Caches[0]
	if c.Sharing != Private || c.Key != `"${matrix.env}-${hashfiles("go.sum", "**/go.sum")}"` {
		t.Errorf("cache = %+v", c)
	}
	s := j.Services[0]
	if s.Name != "db" || s.Image != "postgres:16" || s.Port != 5432 || !reflect.DeepEqual(s.Command, []string{"postgres", "-c", "fsync=off"}) ||
		s.Env["POSTGRES_PASSWORD"] != "x" {
		t.Errorf("service = %+v", s)
	}
	if st := j.Steps[0]; st.If != IfAlways || !st.AllowFailure || st.Workdir != "sub/dir" || st.Run != "make" {
		t.Errorf("step a = %+v", st)
	}
	if j.Steps[1].If != IfFailure {
		t.Errorf("step b = %+v", j.Steps[1])
	}
	a := j.Artifacts
	if a.When != OnFailure || a.ExpireIn != 7*24*time.Hour || !a.Required || len(a.Paths) != 2 {
		t.Errorf("artifacts = %+v", a)
	}
	w := f.Workflow
	if len(w.Triggers) != 5 {
		t.Fatalf("triggers = %+v", w.Triggers)
	}
	cron := w.Triggers[3]
	if cron.Kind != OnCron || cron.Branch != "main" || cron.Cron == nil {
		t.Fatalf("cron trigger = %+v", cron)
	}
	from := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	if next := cron.Cron.Next(from); !next.Equal(time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("next run after %v = %v", from, next)
	}
}

func TestTriggers(t *testing.T) {
	f := parse(t, `
workflow {
  on "push" { branches = ["main", "release/*", "feature/**"] }
  on "pull_request" {}
  on "tag"  { tags = ["v[0-9]*"] }
  on "cron" {
    schedule = "@daily"
    branch   = "main"
  }
}
job "x" {
  image = "busybox"
  step "x" { run = "true" }
}`)
	w := f.Workflow
	for _, tc := range []struct {
		kind TriggerKind
		ref  string
		want bool
	}{
		{OnPush, "main", true},
		{OnPush, "release/1.2", true},
		{OnPush, "release/1.2/hotfix", false}, // * stays within a segment
		{OnPush, "feature/a/b", true},         // ** crosses segments
		{OnPush, "mainline", false},
		{OnPullRequest, "anything", true}, // no branches: every branch
		{OnTag, "v1.0", true},
		{OnTag, "latest", false},
		{OnCron, "main", true},
		{OnCron, "dev", false},
		{OnManual, "main", false}, // no manual trigger declared
	} {
		if got := w.Triggered(tc.kind, tc.ref); got != tc.want {
			t.Errorf("Triggered(%s, %q) = %v, want %v", tc.kind, tc.ref, got, tc.want)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, bad := range []string{"", "release/[", "a/{b"} {
		if _, err := NewGlob(bad); err == nil {
			t.Errorf("NewGlob(%q) accepted", bad)
		}
	}
	g, err := NewGlob("release/{1,2}.*")
	if err != nil {
		t.Fatal(err)
	}
	if !g.Match("release/1.x") || !g.Match("release/2.0") || g.Match("release/3.0") {
		t.Errorf("Match of %q wrong", g.Pattern)
	}
}

var idRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func TestJobID(t *testing.T) {
	for name, want := range map[string]string{
		"test":                  "test",
		"build-2":               "build-2",
		"Build":                 "build-",
		"build (goos=linux)":    "build-goos-linux-",
		"a_b.c":                 "a-b-c-",
		"--":                    "job-",
		"ÄÖÜ":                   "job-",
		strings.Repeat("a", 63): strings.Repeat("a", 63),
		strings.Repeat("a", 64): strings.Repeat("a", 54) + "-",
	} {
		got := JobID(name)
		if !idRe.MatchString(got) {
			t.Errorf("JobID(%q) = %q: not an RFC 1123 label", name, got)
		}
		if strings.HasSuffix(want, "-") {
			if !strings.HasPrefix(got, want) || len(got) != len(want)+8 {
				t.Errorf("JobID(%q) = %q, want %q + 8 hex digits", name, got, want)
			}
		} else if got != want {
			t.Errorf("JobID(%q) = %q, want %q", name, got, want)
		}
		if JobID(name) != got {
			t.Errorf("JobID(%q) not deterministic", name)
		}
	}
	// Names that sanitise alike still get distinct IDs.
	seen := map[string]string{}
	for _, n := range []string{"build", "Build", "BUILD", "build_", "build.", "build (a=b)", "build-a-b", "build (a-b)",
		strings.Repeat("x", 70), strings.Repeat("x", 71), strings.Repeat("x", 63) + "y"} {
		id := JobID(n)
		if o, dup := seen[id]; dup {
			t.Errorf("JobID(%q) = JobID(%q) = %q", n, o, id)
		}
		seen[id] = n
		if !idRe.MatchString(id) {
			t.Errorf("JobID(%q) = %q: not an RFC 1123 label", n, id)
		}
	}
}

func TestWriteDiagnostics(t *testing.T) {
	src := "job \"a\" {\n\timage = \"busybox\"\n\tneeds = [\"biuld\"]\n\tstep \"x\" { run = \"true\" }\n}\n"
	f, diags := Parse("dir/x.ci.hcl", []byte(src))
	var b strings.Builder
	if err := WriteDiagnostics(&b, diags, f, false); err != nil {
		t.Fatal(err)
	}
	want := "Error: Unknown job\n\n" +
		"  on dir/x.ci.hcl:3:11:\n" +
		"   3: \tneeds = [\"biuld\"]\n" +
		"      \t         ^^^^^^^\n\n" +
		"This job needs unknown job \"biuld\".\n\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WriteDiagnostics(&b, diags, f, true)
	if !strings.Contains(b.String(), "\x1b[") {
		t.Errorf("no colors: %q", b.String())
	}
	b.Reset()
	WriteDiagnostics(&b, diags, nil, false)
	if !strings.Contains(b.String(), "dir/x.ci.hcl:3:11") || strings.Contains(b.String(), "^") {
		t.Errorf("without source: %q", b.String())
	}
}

func TestLoadMissingFile(t *testing.T) {
	f, diags := Load(t.TempDir() + "/nope.ci.hcl")
	if f == nil || !diags.HasErrors() || !strings.Contains(diags[0].Detail, "no such file") {
		t.Fatalf("Load = %v, %v", f, diags)
	}
}
