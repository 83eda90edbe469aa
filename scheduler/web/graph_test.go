package web

import (
	"testing"

	"github.com/jobrun/jobrun/api"
)

func TestLayout(t *testing.T) {
	jobs := []api.Job{
		{ID: 1, Name: "lint", Status: api.Succeeded},
		{ID: 2, Name: "build (goos=linux)", Status: api.Running},
		{ID: 3, Name: "build (goos=windows)", Status: api.Failed},
		{ID: 4, Name: "test", Needs: []string{"build (goos=linux)", "build (goos=windows)"}, Status: api.Waiting},
		{ID: 5, Name: "deploy", Needs: []string{"test", "lint"}, Status: api.Waiting},
		{ID: 6, Name: "docs", Needs: []string{"not-selected"}, Status: api.Queued},
	}
	g := layout(jobs)
	byName := map[string]*group{}
	for _, gr := range g.Groups {
		byName[gr.Name] = gr
	}
	if len(g.Groups) != 5 {
		t.Fatalf("%d groups, want 5 (the matrix as one)", len(g.Groups))
	}
	b := byName["build"]
	if !b.Matrix || len(b.Jobs) != 2 || b.Jobs[0].Label != "goos=linux" || b.Jobs[1].Label != "goos=windows" {
		t.Fatalf("matrix group: %+v", b)
	}
	for name, depth := range map[string]int{"lint": 0, "build": 0, "test": 1, "deploy": 2, "docs": 0} {
		if byName[name].depth != depth {
			t.Errorf("%s at depth %d, want %d", name, byName[name].depth, depth)
		}
	}
	if byName["test"].X <= byName["build"].X || byName["deploy"].X <= byName["test"].X {
		t.Fatal("columns do not go left to right by depth")
	}
	if byName["build"].Y <= byName["lint"].Y {
		t.Fatal("groups of one column overlap")
	}
	// build->test, test->deploy, lint->deploy; docs needs a job outside the run.
	if len(g.Edges) != 3 {
		t.Fatalf("%d edges, want 3", len(g.Edges))
	}
	if g.Edges[0].Status != api.Failed {
		t.Fatalf("the matrix's edge is %s, want failed (its worst)", g.Edges[0].Status)
	}
	if g.W < byName["deploy"].X+boxW || g.H < b.Y+b.H {
		t.Fatalf("canvas %dx%d does not hold the groups", g.W, g.H)
	}
}
