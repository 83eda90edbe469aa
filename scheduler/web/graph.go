package web

import (
	"fmt"
	"strings"

	"github.com/jobrun/jobrun/api"
)

// The job graph's geometry, in SVG user units.
const (
	boxW     = 200 // a group's width
	colGap   = 56  // between columns, where the edges run
	rowH     = 26  // one job in a group
	headH    = 24  // a matrix group's title
	pad      = 6   // inside a group, above and below its jobs
	groupGap = 18  // between groups of one column
	margin   = 8
)

// graph is a run's jobs laid out as their `needs` DAG: a column per
// depth, the combinations of one matrix block drawn as one group.
type graph struct {
	W, H   int
	Groups []*group
	Edges  []edge
}

// group is one job block: a single job, or a matrix block's combinations.
type group struct {
	Name   string
	Matrix bool
	X, Y   int
	W, H   int
	Jobs   []graphJob
	depth  int
	needs  []string // the blocks it needs
	first  int64
}

// graphJob is one job's row in its group.
type graphJob struct {
	ID     int64
	Label  string // the matrix values for a combination, else the name
	Status string
	Time   string
	Y      int // the row's top
	TextY  int
}

// edge is a need: from the needed group's right side to the needing
// group's left side, as an SVG path.
type edge struct {
	D      string
	Status string // the needed block's worst status, for colour
}

// layout lays jobs out. Jobs whose needs name no job of the run (a
// selection) are drawn at depth 0.
func layout(jobs []api.Job) *graph {
	if len(jobs) == 0 {
		return nil
	}
	byName := map[string]*api.Job{}
	for i := range jobs {
		byName[jobs[i].Name] = &jobs[i]
	}
	depth := map[string]int{}
	var depthOf func(name string, seen map[string]bool) int
	depthOf = func(name string, seen map[string]bool) int {
		if d, ok := depth[name]; ok {
			return d
		}
		j := byName[name]
		if j == nil || seen[name] { // outside the run, or a cycle (the parser refuses them)
			return -1
		}
		seen[name] = true
		d := 0
		for _, n := range j.Needs {
			if nd := depthOf(n, seen); nd+1 > d {
				d = nd + 1
			}
		}
		depth[name] = d
		return d
	}
	groups := map[string]*group{}
	var order []*group
	for _, j := range jobs {
		b := blockName(j.Name)
		g := groups[b]
		if g == nil {
			g = &group{Name: b, first: j.ID}
			groups[b] = g
			order = append(order, g)
		}
		label := j.Name
		if b != j.Name {
			g.Matrix = true
			label = strings.TrimSuffix(strings.TrimPrefix(j.Name, b+" ("), ")")
		}
		g.Jobs = append(g.Jobs, graphJob{ID: j.ID, Label: label, Status: j.Status, Time: jobDuration(j)})
		if d := depthOf(j.Name, map[string]bool{}); d > g.depth {
			g.depth = d
		}
		for _, n := range j.Needs {
			nb := blockName(n)
			if _, ok := byName[n]; ok && !contains(g.needs, nb) {
				g.needs = append(g.needs, nb)
			}
		}
	}
	gr := &graph{Groups: order}
	colY := map[int]int{}
	maxDepth := 0
	for _, g := range order {
		g.W = boxW
		g.X = margin + g.depth*(boxW+colGap)
		g.Y = margin + colY[g.depth]
		top := g.Y + pad
		if g.Matrix {
			top += headH
		}
		for i := range g.Jobs {
			g.Jobs[i].Y = top + i*rowH
			g.Jobs[i].TextY = g.Jobs[i].Y + rowH/2 + 5
		}
		g.H = top + len(g.Jobs)*rowH + pad - g.Y
		colY[g.depth] += g.H + groupGap
		maxDepth = max(maxDepth, g.depth)
		gr.H = max(gr.H, g.Y+g.H+margin)
	}
	gr.W = 2*margin + (maxDepth+1)*boxW + maxDepth*colGap
	for _, g := range order {
		for _, nb := range g.needs {
			from := groups[nb]
			x1, y1 := from.X+from.W, from.Y+from.H/2
			x2, y2 := g.X, g.Y+g.H/2
			mid := (x1 + x2) / 2
			gr.Edges = append(gr.Edges, edge{
				D:      fmt.Sprintf("M%d %d C%d %d, %d %d, %d %d", x1, y1, mid, y1, mid, y2, x2, y2),
				Status: worst(from.Jobs),
			})
		}
	}
	return gr
}

// worst is the status that colours a group's outgoing edges: the first
// of failed, running, queued... that any of its jobs has.
func worst(js []graphJob) string {
	for _, st := range []string{api.Errored, api.Failed, api.Cancelled, api.Running, api.Queued, api.Waiting, api.Superseded, api.Skipped} {
		for _, j := range js {
			if j.Status == st {
				return st
			}
		}
	}
	return api.Succeeded
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
