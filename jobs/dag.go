package jobs

import (
	"container/heap"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// edge is one dependency: the job needs job `to`, as written at rng.
type edge struct {
	to  int
	rng hcl.Range
}

// order resolves the jobs' needs to expanded names, reports unknown jobs
// and cycles, and stores the jobs in f in topological order.
func (p *parser) order(f *File, all []*pending, bases map[string]bool) {
	byName := map[string]int{}
	byBase := map[string][]int{}
	for i, pj := range all {
		byName[pj.job.Name] = i
		byBase[pj.job.Base] = append(byBase[pj.job.Base], i)
	}
	baseNames := sortedKeys(bases)
	edges := make([][]edge, len(all))
	for i, pj := range all {
		seen := map[int]bool{}
		for _, n := range pj.needs {
			var targets []int
			switch {
			case bases[n.s]:
				targets = byBase[n.s]
			default:
				t, ok := byName[n.s]
				if !ok {
					p.errorf(n.rng, "Unknown job", "This job needs unknown job %q.%s", n.s, suggest(n.s, baseNames))
					continue
				}
				targets = []int{t}
			}
			for _, t := range targets {
				if !seen[t] {
					seen[t] = true
					edges[i] = append(edges[i], edge{t, n.rng})
					pj.job.Needs = append(pj.job.Needs, all[t].job.Name)
				}
			}
		}
	}
	p.cycles(all, edges)
	f.byName, f.bases = map[string]*Job{}, map[string][]*Job{}
	for _, i := range topo(all, edges) {
		j := all[i].job
		f.Jobs = append(f.Jobs, j)
		f.byName[j.Name] = j
		f.bases[j.Base] = append(f.bases[j.Base], j)
	}
	p.checkIDs(f.Jobs)
}

// cycles reports each dependency cycle once, naming its jobs.
func (p *parser) cycles(all []*pending, edges [][]edge) {
	for _, scc := range components(len(all), edges) {
		in := map[int]bool{}
		for _, v := range scc {
			in[v] = true
		}
		start := scc[0]
		for _, v := range scc {
			start = min(start, v)
		}
		path, first := cycleFrom(start, edges, in)
		if path == nil {
			continue // a single job that does not need itself
		}
		names := make([]string, len(path))
		for i, v := range path {
			names[i] = all[v].job.Name
		}
		p.errorf(first, "Dependency cycle", "The needs of these jobs form a cycle: %s.", strings.Join(names, " -> "))
	}
}

// cycleFrom finds the shortest cycle through start within the component
// in, returning it as start -> ... -> start and the range of its first
// need.
func cycleFrom(start int, edges [][]edge, in map[int]bool) ([]int, hcl.Range) {
	prev := map[int]int{}
	queue := []int{start}
	visited := map[int]bool{start: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, e := range edges[v] {
			if !in[e.to] {
				continue
			}
			if e.to == start {
				path := []int{start}
				for u := v; u != start; u = prev[u] {
					path = append(path, u)
				}
				// path is start, then the jobs back to start's successor.
				rev := []int{start}
				for i := len(path) - 1; i >= 1; i-- {
					rev = append(rev, path[i])
				}
				rev = append(rev, start)
				return rev, firstEdge(start, rev[1], edges)
			}
			if !visited[e.to] {
				visited[e.to] = true
				prev[e.to] = v
				queue = append(queue, e.to)
			}
		}
	}
	return nil, hcl.Range{}
}

func firstEdge(from, to int, edges [][]edge) hcl.Range {
	for _, e := range edges[from] {
		if e.to == to {
			return e.rng
		}
	}
	return hcl.Range{}
}

// components returns the strongly connected components of the graph
// (Tarjan's algorithm, iterative so deep graphs cannot exhaust the stack).
func components(n int, edges [][]edge) [][]int {
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var out [][]int
	next := 0
	type frame struct{ v, e int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			top := &call[len(call)-1]
			v := top.v
			if top.e < len(edges[v]) {
				w := edges[v][top.e].to
				top.e++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
			if low[v] == index[v] {
				var scc []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					scc = append(scc, w)
					if w == v {
						break
					}
				}
				out = append(out, scc)
			}
		}
	}
	// Report cycles in the order the file declares their jobs.
	sort.Slice(out, func(i, j int) bool { return minOf(out[i]) < minOf(out[j]) })
	return out
}

func minOf(s []int) int {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

// topo orders the jobs so that each follows the jobs it needs, choosing
// among ready jobs the one declared first. Jobs in cycles (already
// reported) come last in declaration order.
func topo(all []*pending, edges [][]edge) []int {
	waiting := make([]int, len(all))
	dependants := make([][]int, len(all))
	for v, es := range edges {
		for _, e := range es {
			waiting[v]++
			dependants[e.to] = append(dependants[e.to], v)
		}
	}
	ready := &intHeap{}
	for v := range all {
		if waiting[v] == 0 {
			heap.Push(ready, v)
		}
	}
	var out []int
	done := make([]bool, len(all))
	for ready.Len() > 0 {
		v := heap.Pop(ready).(int)
		out = append(out, v)
		done[v] = true
		for _, d := range dependants[v] {
			if waiting[d]--; waiting[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	for v := range all {
		if !done[v] {
			out = append(out, v)
		}
	}
	return out
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// checkIDs reports two jobs whose IDs collide, which needs a name
// crafted to match another's hash.
func (p *parser) checkIDs(jobs []*Job) {
	ids := map[string]*Job{}
	for _, j := range jobs {
		if o, dup := ids[j.ID]; dup {
			p.errorf(j.DeclRange, "Duplicate job ID", "Jobs %q and %q have the same ID %q; rename one.", o.Name, j.Name, j.ID)
			continue
		}
		ids[j.ID] = j
	}
}

// Select returns the named jobs and every job they need, directly or not,
// in the file's order. A name is a job's full name, or a job block's name,
// which selects all its matrix combinations.
func (f *File) Select(names ...string) ([]*Job, error) {
	want := map[string]bool{}
	var visit func(j *Job)
	visit = func(j *Job) {
		if want[j.Name] {
			return
		}
		want[j.Name] = true
		for _, n := range j.Needs {
			if d := f.byName[n]; d != nil {
				visit(d)
			}
		}
	}
	for _, n := range names {
		js := f.bases[n]
		if j := f.byName[n]; j != nil {
			js = []*Job{j}
		}
		if len(js) == 0 {
			bases := make([]string, 0, len(f.bases))
			for b := range f.bases {
				bases = append(bases, b)
			}
			sort.Strings(bases)
			return nil, fmt.Errorf("no job %q in %s.%s", n, f.Path, suggest(n, bases))
		}
		for _, j := range js {
			visit(j)
		}
	}
	var out []*Job
	for _, j := range f.Jobs {
		if want[j.Name] {
			out = append(out, j)
		}
	}
	return out, nil
}

// Job returns the job with the given full name, or nil.
func (f *File) Job(name string) *Job { return f.byName[name] }
