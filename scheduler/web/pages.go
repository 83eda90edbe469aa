package web

import (
	"bytes"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/deadline"
	"github.com/jobrun/jobrun/internal/units"
)

// page is what every template gets: the layout's parts and the page's
// own data.
type page struct {
	Title string
	// Nav names the section the page belongs to.
	Nav string
	// Refresh, when set, reloads the page every so many seconds without
	// JavaScript (a job still running); the script turns it off where it
	// streams instead.
	Refresh int
	// SignedIn: the request has a session, of Role; Operate: it may
	// cancel and retry (the buttons show), with CSRF in their forms.
	SignedIn bool
	Role     api.Role
	Operate  bool
	CSRF     string
	Path     string
	Data     any
}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"dur":     func(d api.Duration) string { return fmtDuration(time.Duration(d)) },
		"since":   func(t time.Time) string { return fmtDuration(time.Since(t)) + " ago" },
		"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"hms":     func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"size":    units.FormatSize,
		"runTime": runDuration,
		"jobTime": jobDuration,
		"final":   api.Final,
		"join":    strings.Join,
		"block":   blockName,
		"query":   url.QueryEscape,
		"pathesc": escapePath,
		"short":   shortCommit,
		"plusOne": func(i int) int { return i + 1 },
		"attempts": func(n int) []int {
			out := make([]int, n)
			for i := range out {
				out[i] = i + 1
			}
			return out
		},
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"runs", "run", "job", "agents", "login", "error"} {
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html"))
		out[name] = t
	}
	return out
}

// render writes a page; a template error (ours) is logged and becomes a
// plain 500, not half a page.
func (u *ui) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if s := session(r); s != nil {
		p.SignedIn, p.Role, p.CSRF = true, s.Role, s.CSRF
		p.Operate = s.Role.Allows(api.RoleOperate)
	}
	p.Path = r.URL.RequestURI()
	var b bytes.Buffer
	if err := u.pages[name].Execute(&b, p); err != nil {
		u.log.Error("render page", "page", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func (u *ui) error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	u.render(w, r, code, "error", page{Title: http.StatusText(code), Data: map[string]any{"Code": code, "Message": msg}})
}

// fail answers a Backend error.
func (u *ui) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrGone):
		u.error(w, r, http.StatusGone, err.Error())
	case errors.Is(err, ErrNotFound):
		u.error(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrConflict):
		u.error(w, r, http.StatusConflict, err.Error())
	case r.Context().Err() != nil:
	default:
		u.log.Error("web request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		u.error(w, r, http.StatusInternalServerError, err.Error())
	}
}

func (u *ui) pathID(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	v, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || v < 1 {
		u.error(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+": "+name+" must be a positive number.")
		return 0, false
	}
	return v, true
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// fmtDuration rounds to what a reader of a CI page cares about.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return units.FormatDuration(d.Round(100 * time.Millisecond))
	}
	return units.FormatDuration(d.Round(time.Second))
}

// runDuration is how long a run took, or has taken so far.
func runDuration(r api.Run) string {
	end := time.Now()
	if r.Finished != nil {
		end = *r.Finished
	}
	return fmtDuration(end.Sub(r.Created))
}

// jobDuration is how long a job's current attempt ran, or has so far;
// "" before it started.
func jobDuration(j api.Job) string {
	if j.Result != nil && j.Result.Duration > 0 {
		return fmtDuration(time.Duration(j.Result.Duration))
	}
	if j.Started == nil {
		return ""
	}
	end := time.Now()
	if j.Finished != nil {
		end = *j.Finished
	}
	return fmtDuration(end.Sub(*j.Started))
}

// blockName is the job block a job came from: a matrix combination
// "build (goos=linux)" is of block "build".
func blockName(name string) string {
	if i := strings.Index(name, " ("); i > 0 && strings.HasSuffix(name, ")") {
		return name[:i]
	}
	return name
}

func shortCommit(c string) string {
	if len(c) > 10 {
		return c[:10]
	}
	return c
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// branchRuns are the runs of one branch of one repository.
type branchRuns struct {
	Repo, Branch string
	Runs         []api.Run
}

func (u *ui) runsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	repo, branch := q.Get("repo"), q.Get("branch")
	limit := 200
	if repo != "" {
		limit = 100
	}
	runs, err := u.b.Runs(r.Context(), repo, branch, limit)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	var groups []*branchRuns
	by := map[[2]string]*branchRuns{}
	for _, run := range runs {
		k := [2]string{run.Repo, run.Branch}
		g := by[k]
		if g == nil {
			g = &branchRuns{Repo: run.Repo, Branch: run.Branch}
			by[k] = g
			groups = append(groups, g)
		}
		g.Runs = append(g.Runs, run)
	}
	// Repositories by name; within one, the branch with the newest run first.
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].Repo < groups[j].Repo })
	p := page{Title: "Runs", Nav: "runs", Data: map[string]any{"Groups": groups, "Repo": repo, "Branch": branch}}
	for _, g := range groups {
		if !api.Final(g.Runs[0].Status) {
			p.Refresh = 5
		}
	}
	u.render(w, r, http.StatusOK, "runs", p)
}

func (u *ui) runPage(w http.ResponseWriter, r *http.Request) {
	id, ok := u.pathID(w, r, "id")
	if !ok {
		return
	}
	run, err := u.b.Run(r.Context(), id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := page{Title: "Run " + itoa(run.ID), Nav: "runs", Data: map[string]any{"Run": run, "Graph": layout(run.Jobs), "Agents": u.agentNames(r)}}
	if !api.Final(run.Status) {
		p.Refresh = 3
	}
	u.render(w, r, http.StatusOK, "run", p)
}

func (u *ui) agentsPage(w http.ResponseWriter, r *http.Request) {
	as, err := u.b.Agents(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	online, slots, busy := 0, 0, 0
	for _, a := range as {
		if a.Online {
			online++
			slots += a.Slots
			busy += a.Busy
		}
	}
	u.render(w, r, http.StatusOK, "agents", page{Title: "Agents", Nav: "agents", Refresh: 10,
		Data: map[string]any{"Agents": as, "Online": online, "Slots": slots, "Busy": busy}})
}

// jobView is the job page's data.
type jobView struct {
	Job     *api.Job
	Run     *api.Run
	Attempt int
	// Current is whether Attempt is the job's latest.
	Current bool
	Steps   []api.Step
	Log     logView
	// Artifacts of the attempt, nil when it stored none.
	Artifacts []Artifact
	ArtBytes  int64
	CanCancel bool
	CanRetry  bool
	// AgentName is the name of the agent that ran the attempt, if it is
	// still in the pool.
	AgentName string
}

func (u *ui) jobPage(w http.ResponseWriter, r *http.Request) {
	id, ok := u.pathID(w, r, "id")
	if !ok {
		return
	}
	ctx := r.Context()
	j, err := u.b.Job(ctx, id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	run, err := u.b.Run(ctx, j.Run)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	v := jobView{Job: j, Run: run, Attempt: j.Attempt, Current: true, Steps: j.Steps, AgentName: u.agentNames(r)[j.Agent],
		CanCancel: !api.Final(j.Status), CanRetry: api.Final(j.Status) && j.Status != api.Skipped}
	if n, err := strconv.Atoi(r.URL.Query().Get("attempt")); err == nil && n >= 1 && n < j.Attempt {
		// An earlier attempt: its log and artifacts; steps are kept for
		// the latest attempt only.
		v.Attempt, v.Current, v.Steps = n, false, nil
	}
	if v.Attempt > 0 {
		at := api.Attempt{Job: j.ID, Attempt: v.Attempt}
		// The tail of the log, read in pages; a following stream starts
		// at the end of its last whole line.
		size, err := u.b.LogSize(ctx, at)
		if err == nil {
			v.Log, err = tailLog(ctx, u.readLog(at), size)
		}
		if err != nil {
			u.fail(w, r, err)
			return
		}
		arts, err := u.b.Artifacts(ctx, at)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			u.fail(w, r, err)
			return
		default:
			v.Artifacts = arts
			for _, a := range arts {
				v.ArtBytes += a.Size
			}
		}
	}
	p := page{Title: j.Name + " · run " + itoa(j.Run), Nav: "runs", Data: v}
	if v.Current && !api.Final(j.Status) {
		p.Refresh = 5
	}
	u.render(w, r, http.StatusOK, "job", p)
}

// agentNames maps the pool's agent ids to their names. Agents that left
// are missing: their id is shown instead. Not being able to list them
// costs only the names.
func (u *ui) agentNames(r *http.Request) map[string]string {
	as, err := u.b.Agents(r.Context())
	if err != nil {
		u.log.Warn("list agents for their names", "error", err)
		return nil
	}
	out := make(map[string]string, len(as))
	for _, a := range as {
		out[a.ID] = a.Name
	}
	return out
}

// artifact serves one stored file as a download.
func (u *ui) artifact(w http.ResponseWriter, r *http.Request) {
	id, ok := u.pathID(w, r, "id")
	if !ok {
		return
	}
	n, ok := u.pathID(w, r, "n")
	if !ok {
		return
	}
	p := r.PathValue("path")
	rc, err := u.b.OpenArtifact(r.Context(), api.Attempt{Job: id, Attempt: int(n)}, p)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	defer rc.Close()
	name := p[strings.LastIndexByte(p, '/')+1:]
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(name))
	if _, err := io.Copy(deadline.NewWriter(w, u.opts.Progress), rc); err != nil && r.Context().Err() == nil {
		u.log.Warn("send artifact", "job", id, "attempt", n, "path", p, "error", err)
	}
}
