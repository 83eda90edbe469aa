package jobs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// matrix is a job's checked matrix.
type matrix struct {
	keys map[string]bool // every declared key, even one with bad values
	// combos are the combinations in order; nil when the matrix is
	// broken (then the job is checked once with unknown values).
	combos []map[string]string
	broken bool
}

// matrix reads rj's matrix block. Combinations come in a fixed order:
// keys sorted by name, the last key varying fastest, values in the order
// written.
func (p *parser) matrix(rj *rawJob) matrix {
	m := matrix{keys: map[string]bool{}}
	if rj.matrix == nil {
		m.combos = []map[string]string{nil}
		return m
	}
	if len(rj.matrix.attrs) == 0 {
		p.errorf(rj.matrix.b.DefRange, "Empty matrix",
			"A matrix needs at least one key with values, like matrix { goos = [\"linux\", \"windows\"] }.")
		m.broken = true
		return m
	}
	e := newEvaluator(p, nil, nil)
	values := map[string][]string{}
	for k := range rj.matrix.attrs {
		m.keys[k] = true
	}
	keys := sortedKeys(m.keys)
	total := 1
	for _, k := range keys {
		a := rj.matrix.attrs[k]
		items, ok := e.strList(a.Expr, "matrix."+k)
		if !ok {
			m.broken = true
			continue
		}
		if len(items) == 0 {
			p.errorf(a.Expr.Range(), "Empty matrix values", "matrix.%s has no values; give it at least one, or remove it.", k)
			m.broken = true
			continue
		}
		seen := map[string]bool{}
		for _, it := range items {
			if seen[it.s] {
				p.errorf(it.rng, "Duplicate matrix value", "matrix.%s lists %q twice.", k, it.s)
				m.broken = true
			}
			seen[it.s] = true
			values[k] = append(values[k], it.s)
		}
		total *= len(items)
		if total > maxCombinations {
			p.errorf(rj.matrix.b.DefRange, "Matrix too large",
				"The matrix of job %q has more than %d combinations.", rj.name, maxCombinations)
			m.broken = true
			return m
		}
	}
	if m.broken {
		return m
	}
	m.combos = []map[string]string{{}}
	for _, k := range keys {
		var next []map[string]string
		for _, c := range m.combos {
			for _, v := range values[k] {
				n := make(map[string]string, len(c)+1)
				for ck, cv := range c {
					n[ck] = cv
				}
				n[k] = v
				next = append(next, n)
			}
		}
		m.combos = next
	}
	return m
}

// matrixName is the name of one combination: `build (arch=amd64, goos=linux)`.
func matrixName(base string, combo map[string]string) string {
	if len(combo) == 0 {
		return base
	}
	keys := make([]string, 0, len(combo))
	for k := range combo {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + combo[k]
	}
	return fmt.Sprintf("%s (%s)", base, strings.Join(parts, ", "))
}

// vars are the matrix variables of one combination; with a broken matrix
// every key is unknown, so expressions using it are skipped rather than
// reported again.
func (m matrix) vars(combo map[string]string) map[string]cty.Value {
	vars := map[string]cty.Value{}
	if m.broken {
		for k := range m.keys {
			vars[k] = cty.UnknownVal(cty.String)
		}
		return vars
	}
	for k, v := range combo {
		vars[k] = cty.StringVal(v)
	}
	return vars
}
