package jobs

import (
	"fmt"

	"github.com/bmatcuk/doublestar/v4"
)

// Glob is a checked branch or tag pattern in doublestar syntax: `*` matches
// within one path segment ("release/*"), `**` across segments.
type Glob struct {
	Pattern string
}

// NewGlob checks pattern and returns it as a Glob.
func NewGlob(pattern string) (Glob, error) {
	if pattern == "" {
		return Glob{}, fmt.Errorf("empty pattern")
	}
	if !doublestar.ValidatePattern(pattern) {
		return Glob{}, fmt.Errorf("invalid pattern %q: check its brackets and braces", pattern)
	}
	return Glob{Pattern: pattern}, nil
}

// Match reports whether name (a branch or tag name such as "release/1.2")
// matches the pattern.
func (g Glob) Match(name string) bool {
	// The pattern was validated by NewGlob, so matching cannot fail.
	return doublestar.MatchUnvalidated(g.Pattern, name)
}

// matchAny reports whether name matches one of globs; no globs match
// everything.
func matchAny(globs []Glob, name string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if g.Match(name) {
			return true
		}
	}
	return false
}

// Matches reports whether the trigger fires for an event of kind on ref:
// a branch name for push, pull_request (the target branch) and cron, a tag
// name for tag. Manual triggers match any ref.
func (t Trigger) Matches(kind TriggerKind, ref string) bool {
	if t.Kind != kind {
		return false
	}
	switch kind {
	case OnPush, OnPullRequest:
		return matchAny(t.Branches, ref)
	case OnTag:
		return matchAny(t.Tags, ref)
	case OnCron:
		return t.Branch == "" || t.Branch == ref
	}
	return true
}

// Triggered reports whether any trigger of the workflow fires for an event
// of kind on ref (see Trigger.Matches).
func (w Workflow) Triggered(kind TriggerKind, ref string) bool {
	for _, t := range w.Triggers {
		if t.Matches(kind, ref) {
			return true
		}
	}
	return false
}
