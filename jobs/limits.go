package jobs

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits on a job file. HCL's parser recurses once per nesting level and
// per operator, and a deep enough file overflows the goroutine stack,
// which no recover catches; the scheduler parses files from any branch, so
// the limits are checked on the tokens before parsing.
const (
	// MaxFileSize is the largest job file accepted, in bytes.
	MaxFileSize = 1 << 20
	maxDepth    = 64   // brackets, braces, parentheses and templates
	maxOps      = 1000 // operators and splats in the whole file
)

// checkLimits rejects files too large or too deeply nested to parse
// safely.
func checkLimits(filename string, src []byte) hcl.Diagnostics {
	if len(src) > MaxFileSize {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Job file too large",
			Detail:   fmt.Sprintf("%s has %d bytes; a job file may have at most %d.", filename, len(src), MaxFileSize),
			Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	depth, ops := 0, 0
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
			if depth > maxDepth {
				return limitDiag(tok.Range, "Too deeply nested", fmt.Sprintf("Nesting is limited to %d levels.", maxDepth))
			}
			if tok.Type != hclsyntax.TokenTemplateControl {
				break
			}
			// %{if} and %{for} nest until their %{end...}.
			if ops++; ops > maxOps {
				return limitDiag(tok.Range, "Too many operators", fmt.Sprintf("A job file may use at most %d operators.", maxOps))
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenCHeredoc,
			hclsyntax.TokenTemplateSeqEnd:
			depth = max(depth-1, 0)
		case hclsyntax.TokenBang, hclsyntax.TokenMinus, hclsyntax.TokenPlus, hclsyntax.TokenStar,
			hclsyntax.TokenSlash, hclsyntax.TokenPercent, hclsyntax.TokenAnd, hclsyntax.TokenOr,
			hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq,
			hclsyntax.TokenGreaterThan, hclsyntax.TokenGreaterThanEq, hclsyntax.TokenQuestion:
			if ops++; ops > maxOps {
				return limitDiag(tok.Range, "Too many operators", fmt.Sprintf("A job file may use at most %d operators.", maxOps))
			}
		}
	}
	return nil
}

func limitDiag(rng hcl.Range, summary, detail string) hcl.Diagnostics {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()}}
}
