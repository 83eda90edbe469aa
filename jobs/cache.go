package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// keyFunctions are the functions a cache key may call.
var keyFunctions = []string{"hashfiles"}

func (p *parser) cache(e *evaluator, b block) (Cache, bool) {
	c := Cache{Name: b.name, Sharing: Shared, DeclRange: b.b.DefRange}
	ok := true
	if a := b.attrs["path"]; a == nil {
		p.errorf(b.b.DefRange, "Missing path", "Cache %q needs the absolute path it is mounted at, like path = \"/go/pkg/mod\".", b.name)
		ok = false
	} else if s, good := e.str(a.Expr, "path"); good {
		c.Path = s
		if !path.IsAbs(s) || strings.ContainsRune(s, 0) {
			p.errorf(a.Expr.Range(), "Invalid cache path", "path %q must be an absolute path in the container.", s)
			ok = false
		} else if path.Clean(s) == "/" {
			p.errorf(a.Expr.Range(), "Invalid cache path", "A cache cannot be mounted over the container's root.")
			ok = false
		}
	} else {
		ok = false
	}
	if a := b.attrs["sharing"]; a != nil {
		s, good := e.oneOf(a.Expr, "sharing", string(Shared), string(Locked), string(Private))
		if good {
			c.Sharing = Sharing(s)
		}
		ok = ok && good
	}
	if a := b.attrs["key"]; a != nil {
		r := a.Expr.Range()
		if r.Start.Byte >= 0 && r.End.Byte <= len(p.src) && r.Start.Byte <= r.End.Byte {
			c.Key = string(r.SliceBytes(p.src))
		}
		c.keyExpr, c.vars = a.Expr, e.ctx.Variables
		if !p.checkKey(e, a.Expr) {
			ok = false
		}
	}
	return c, ok
}

// checkKey checks a cache key now, with hashfiles checking its patterns
// only: the files are hashed by EvalKey after checkout.
func (p *parser) checkKey(e *evaluator, expr hcl.Expression) bool {
	if se, ok := expr.(hclsyntax.Expression); ok {
		bad := false
		hclsyntax.VisitAll(se, func(n hclsyntax.Node) hcl.Diagnostics {
			if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name != "hashfiles" {
				p.errorf(call.NameRange, fmt.Sprintf("Unknown function %q", call.Name),
					"A cache key may call %s only.%s", orList(keyFunctions), suggest(call.Name, keyFunctions))
				bad = true
			}
			return nil
		})
		if bad {
			return false
		}
	}
	ke := *e
	ke.ctx = keyContext(e.ctx.Variables, func(patterns []string) (string, error) { return "", nil })
	_, ok := ke.str(expr, "key")
	return ok
}

// keyContext is the evaluation context of a cache key, with hashfiles
// implemented by hash.
func keyContext(vars map[string]cty.Value, hash func([]string) (string, error)) *hcl.EvalContext {
	return &hcl.EvalContext{
		Variables: vars,
		Functions: map[string]function.Function{"hashfiles": function.New(&function.Spec{
			Description: "hashfiles returns a SHA-256 over the workspace files matching the globs.",
			VarParam:    &function.Parameter{Name: "patterns", Type: cty.String},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				if len(args) == 0 {
					return cty.NilVal, errors.New("hashfiles needs at least one glob, like hashfiles(\"go.sum\")")
				}
				patterns := make([]string, len(args))
				for i, a := range args {
					patterns[i] = a.AsString()
					if err := checkRelGlob(patterns[i]); err != nil {
						return cty.NilVal, function.NewArgError(i, err)
					}
				}
				s, err := hash(patterns)
				if err != nil {
					return cty.NilVal, err
				}
				return cty.StringVal(s), nil
			},
		})},
	}
}

// EvalKey evaluates the cache's key in the job's workspace, computing the
// hashfiles calls it makes. A cache without a key has the key "".
func (c Cache) EvalKey(workspaceDir string) (string, error) {
	if c.keyExpr == nil {
		return "", nil
	}
	vars := map[string]cty.Value{}
	for k, v := range c.vars {
		vars[k] = v
	}
	ctx := keyContext(vars, func(patterns []string) (string, error) { return HashFiles(workspaceDir, patterns...) })
	v, diags := c.keyExpr.Value(ctx)
	if diags.HasErrors() {
		return "", fmt.Errorf("cache %q: key: %w", c.Name, diags)
	}
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return "", fmt.Errorf("cache %q: key is not a string", c.Name)
	}
	return v.AsString(), nil
}

// HashFiles returns the hex SHA-256 over the regular files under dir that
// match any of patterns (doublestar globs relative to dir): for each file,
// in sorted order, its slash-separated relative path and the SHA-256 of its
// content. No match gives "". Symbolic links are followed only while they
// stay inside dir; one that leads out is an error.
func HashFiles(dir string, patterns ...string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("hashfiles: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	matched := map[string]bool{}
	for _, pat := range patterns {
		if err := checkRelGlob(pat); err != nil {
			return "", fmt.Errorf("hashfiles: %w", err)
		}
		pat = strings.TrimPrefix(path.Clean(pat), "./")
		if !strings.ContainsAny(pat, "*?[{\\") {
			// A plain path: no need to walk the tree for it.
			switch _, err := fs.Stat(fsys, pat); {
			case err == nil:
				matched[pat] = true
			case !errors.Is(err, fs.ErrNotExist):
				return "", fmt.Errorf("hashfiles %q: %w", pat, err)
			}
			continue
		}
		base, _ := doublestar.SplitPattern(pat)
		err := fs.WalkDir(fsys, base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() && doublestar.MatchUnvalidated(pat, p) {
				matched[p] = true
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hashfiles %q: %w", pat, err)
		}
	}
	if len(matched) == 0 {
		return "", nil
	}
	names := make([]string, 0, len(matched))
	for n := range matched {
		names = append(names, n)
	}
	sort.Strings(names)
	sum := sha256.New()
	for _, n := range names {
		fh, err := hashFile(root, n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a dangling link inside the workspace
		}
		if err != nil {
			return "", fmt.Errorf("hashfiles: %w", err)
		}
		if fh == nil {
			continue
		}
		fmt.Fprintf(sum, "%s\x00%x\n", n, fh)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// hashFile hashes one file through root, which refuses links that lead
// out of it. Directories reached through a link give nil.
func hashFile(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return h.Sum(nil), nil
}
