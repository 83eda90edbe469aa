package jobs

import (
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// evaluator evaluates the expressions of one job (one matrix combination)
// and reports problems to its parser.
type evaluator struct {
	p   *parser
	ctx *hcl.EvalContext
	// keys are the matrix keys the job declares; nil without a matrix.
	keys map[string]bool
}

func newEvaluator(p *parser, keys map[string]bool, combo map[string]cty.Value) *evaluator {
	vars := map[string]cty.Value{"matrix": cty.EmptyObjectVal}
	if len(combo) > 0 {
		vars["matrix"] = cty.ObjectVal(combo)
	}
	return &evaluator{p: p, keys: keys, ctx: &hcl.EvalContext{Variables: vars}}
}

// checkRefs reports references that are not ${matrix.KEY} with a declared
// KEY, above all ${NAME} meant for the shell.
func (e *evaluator) checkRefs(expr hcl.Expression) bool {
	ok := true
	for _, tr := range expr.Variables() {
		root, rng := tr.RootName(), tr.SourceRange()
		if root != "matrix" {
			e.p.errorf(rng, "Shell variable in HCL string",
				"${%s} is HCL interpolation, and jobrun has no variable %q: only ${matrix.KEY} can be used here. "+
					"If it is meant for the shell, escape it as $${%s}, or write $%s.", root, root, root, root)
			ok = false
			continue
		}
		key, hasKey := "", false
		if len(tr) > 1 {
			switch t := tr[1].(type) {
			case hcl.TraverseAttr:
				key, hasKey = t.Name, true
			case hcl.TraverseIndex:
				if t.Key.Type() == cty.String && t.Key.IsKnown() && !t.Key.IsNull() {
					key, hasKey = t.Key.AsString(), true
				}
			}
		}
		switch {
		case !hasKey:
			e.p.errorf(rng, "Matrix key required", "Name one matrix key, as in ${matrix.goos}.")
			ok = false
		case len(tr) > 2:
			e.p.errorf(rng, "Invalid matrix reference", "A matrix value is a string; write ${matrix.%s} with nothing after it.", key)
			ok = false
		case !e.keys[key]:
			detail := "This job has no matrix block."
			if len(e.keys) > 0 {
				detail = fmt.Sprintf("This job's matrix has no key %q; it has %s.%s", key, quoteList(sortedKeys(e.keys)), suggest(key, sortedKeys(e.keys)))
			}
			e.p.errorf(rng, fmt.Sprintf("Unknown matrix key %q", key), "%s", detail)
			ok = false
		}
	}
	return ok
}

// value evaluates expr; false means it could not (and the problem is
// reported) or, with a broken matrix, that its value is not known.
func (e *evaluator) value(expr hcl.Expression, what string) (cty.Value, bool) {
	if !e.checkRefs(expr) {
		return cty.NilVal, false
	}
	v, diags := expr.Value(e.ctx)
	e.p.add(diags)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		e.p.errorf(expr.Range(), "Missing value", "%s must not be null.", what)
		return cty.NilVal, false
	}
	return v, true
}

func (e *evaluator) convert(expr hcl.Expression, ty cty.Type, what string) (cty.Value, bool) {
	v, ok := e.value(expr, what)
	if !ok {
		return v, false
	}
	c, err := convert.Convert(v, ty)
	if err != nil {
		e.p.errorf(expr.Range(), "Invalid value", "%s must be a %s.", what, ty.FriendlyName())
		return cty.NilVal, false
	}
	return c, true
}

func (e *evaluator) str(expr hcl.Expression, what string) (string, bool) {
	v, ok := e.convert(expr, cty.String, what)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (e *evaluator) boolean(expr hcl.Expression, what string) (bool, bool) {
	v, ok := e.convert(expr, cty.Bool, what)
	if !ok {
		return false, false
	}
	return v.True(), true
}

// number reads a number in (0, max]; integer demands a whole number.
func (e *evaluator) number(expr hcl.Expression, what string, max float64, integer bool) (float64, bool) {
	v, ok := e.convert(expr, cty.Number, what)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	f, _ := bf.Float64()
	switch {
	case integer && !bf.IsInt():
		e.p.errorf(expr.Range(), "Invalid value", "%s must be a whole number, not %s.", what, bf.Text('g', 10))
	case bf.Sign() <= 0 || bf.Cmp(big.NewFloat(max)) > 0:
		e.p.errorf(expr.Range(), "Invalid value", "%s must be greater than 0 and at most %g, not %s.", what, max, bf.Text('g', 10))
	default:
		return f, true
	}
	return 0, false
}

// item is a string element of a list, with where it was written.
type item struct {
	s   string
	rng hcl.Range
}

// strList reads a list of strings written as a list literal, so that each
// element keeps its own range for later diagnostics.
func (e *evaluator) strList(expr hcl.Expression, what string) ([]item, bool) {
	elems, diags := hcl.ExprList(expr)
	if diags.HasErrors() {
		e.p.errorf(expr.Range(), "Invalid value", "%s must be a list of strings, like [\"a\", \"b\"].", what)
		return nil, false
	}
	ok := true
	items := make([]item, 0, len(elems))
	for _, el := range elems {
		s, good := e.str(el, "each element of "+what)
		if !good {
			ok = false
			continue
		}
		items = append(items, item{s, el.Range()})
	}
	return items, ok
}

// strMap reads an object of strings, such as env = { A = "b" }.
func (e *evaluator) strMap(expr hcl.Expression, what string, checkKey func(string) error) (map[string]string, bool) {
	pairs, diags := hcl.ExprMap(expr)
	if diags.HasErrors() {
		e.p.errorf(expr.Range(), "Invalid value", "%s must be an object of strings, like { NAME = \"value\" }.", what)
		return nil, false
	}
	ok := true
	m := make(map[string]string, len(pairs))
	seen := map[string]bool{}
	for _, kv := range pairs {
		k, good := e.str(kv.Key, "a key of "+what)
		if !good {
			ok = false
			continue
		}
		if err := checkKey(k); err != nil {
			e.p.errorf(kv.Key.Range(), "Invalid name", "%s: %s", what, err)
			ok = false
			continue
		}
		if seen[k] {
			e.p.errorf(kv.Key.Range(), "Duplicate key", "%s sets %q twice.", what, k)
			ok = false
			continue
		}
		seen[k] = true
		v, good := e.str(kv.Value, fmt.Sprintf("%s[%q]", what, k))
		if !good {
			ok = false
			continue
		}
		m[k] = v
	}
	return m, ok
}

// oneOf reads a string that must be one of choices.
func (e *evaluator) oneOf(expr hcl.Expression, what string, choices ...string) (string, bool) {
	s, ok := e.str(expr, what)
	if !ok {
		return "", false
	}
	for _, c := range choices {
		if s == c {
			return s, true
		}
	}
	e.p.errorf(expr.Range(), fmt.Sprintf("Invalid %s %q", what, s), "%s must be %s.%s", what, orList(choices), suggest(s, choices))
	return "", false
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// orList renders choices as `"a", "b" or "c"`.
func orList(choices []string) string {
	q := quoteList(choices)
	if i := strings.LastIndex(q, ", "); i >= 0 {
		q = q[:i] + " or " + q[i+2:]
	}
	return q
}
