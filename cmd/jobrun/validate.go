package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/hcl/v2"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/jobs"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newValidateCmd) }

func newValidateCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a job file and print its expanded plan",
		Long: "validate parses FILE (default .ci.hcl), reports every problem with its file:line:col,\n" +
			"and exits 1 if there is an error. Otherwise it prints the jobs in the order they\n" +
			"would run, one per matrix combination. --json prints the plan or the diagnostics\n" +
			"as JSON instead.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ".ci.hcl"
			if len(args) == 1 {
				path = args[0]
			}
			f, diags := jobs.Load(path)
			out := cmd.OutOrStdout()
			var err error
			if asJSON {
				err = writeValidateJSON(out, f, diags)
			} else {
				if len(diags) > 0 {
					errOut := cmd.ErrOrStderr()
					if err := jobs.WriteDiagnostics(errOut, diags, f, isTerminal(errOut)); err != nil {
						return err
					}
				}
				if !diags.HasErrors() {
					err = writePlan(out, f)
				}
			}
			if err != nil {
				return err
			}
			if diags.HasErrors() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan or the diagnostics as JSON")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// writePlan prints the jobs in order, with their matrix values, needs,
// image and number of steps.
func writePlan(w io.Writer, f *jobs.File) error {
	noun := "jobs"
	if len(f.Jobs) == 1 {
		noun = "job"
	}
	fmt.Fprintf(w, "%s: %d %s\n\n", f.Path, len(f.Jobs), noun)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tJOB\tID\tIMAGE\tSTEPS\tTIMEOUT\tNEEDS")
	for i, j := range f.Jobs {
		needs := strings.Join(j.Needs, ", ")
		if needs == "" {
			needs = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", i+1, j.Name, j.ID, j.Image, len(j.Steps), units.FormatDuration(j.Timeout), needs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(f.Workflow.Triggers) > 0 {
		var on []string
		for _, t := range f.Workflow.Triggers {
			on = append(on, triggerText(t))
		}
		fmt.Fprintf(w, "\non: %s\n", strings.Join(on, "; "))
	}
	return nil
}

func triggerText(t jobs.Trigger) string {
	var globs []jobs.Glob
	switch t.Kind {
	case jobs.OnCron:
		s := fmt.Sprintf("cron %q", t.Schedule)
		if t.Branch != "" {
			s += " on " + t.Branch
		}
		return s
	case jobs.OnTag:
		globs = t.Tags
	default:
		globs = t.Branches
	}
	s := string(t.Kind)
	if len(globs) > 0 {
		p := make([]string, len(globs))
		for i, g := range globs {
			p[i] = g.Pattern
		}
		s += " " + strings.Join(p, ", ")
	}
	return s
}

// jsonDiagnostic is a diagnostic as validate --json prints it.
type jsonDiagnostic struct {
	Severity  string `json:"severity"`
	Summary   string `json:"summary"`
	Detail    string `json:"detail,omitempty"`
	Filename  string `json:"filename,omitempty"`
	Line      int    `json:"line,omitempty"`
	Column    int    `json:"column,omitempty"`
	EndLine   int    `json:"end_line,omitempty"`
	EndColumn int    `json:"end_column,omitempty"`
}

// jsonJob is a planned job as validate --json prints it.
type jsonJob struct {
	Name        string            `json:"name"`
	ID          string            `json:"id"`
	Base        string            `json:"base"`
	Matrix      map[string]string `json:"matrix,omitempty"`
	Image       string            `json:"image"`
	Agent       []string          `json:"agent,omitempty"`
	Needs       []string          `json:"needs,omitempty"`
	Timeout     string            `json:"timeout"`
	Steps       []string          `json:"steps"`
	Caches      []string          `json:"caches,omitempty"`
	Artifacts   []string          `json:"artifacts,omitempty"`
	Network     string            `json:"network"`
	Services    []string          `json:"services,omitempty"`
	Secrets     []string          `json:"secrets,omitempty"`
	Concurrency string            `json:"concurrency,omitempty"`
	CPUs        float64           `json:"cpus,omitempty"`
	Memory      int64             `json:"memory,omitempty"`
	Pids        int64             `json:"pids,omitempty"`
	Line        int               `json:"line"`
}

type jsonResult struct {
	File        string           `json:"file"`
	Valid       bool             `json:"valid"`
	Diagnostics []jsonDiagnostic `json:"diagnostics"`
	Jobs        []jsonJob        `json:"jobs,omitempty"`
}

func writeValidateJSON(w io.Writer, f *jobs.File, diags hcl.Diagnostics) error {
	res := jsonResult{File: f.Path, Valid: !diags.HasErrors(), Diagnostics: []jsonDiagnostic{}}
	for _, d := range diags {
		jd := jsonDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			jd.Filename, jd.Line, jd.Column, jd.EndLine, jd.EndColumn = s.Filename, s.Start.Line, s.Start.Column, s.End.Line, s.End.Column
		}
		res.Diagnostics = append(res.Diagnostics, jd)
	}
	if res.Valid {
		for _, j := range f.Jobs {
			res.Jobs = append(res.Jobs, planJob(j))
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func planJob(j *jobs.Job) jsonJob {
	pj := jsonJob{
		Name: j.Name, ID: j.ID, Base: j.Base, Matrix: j.Matrix, Image: j.Image, Agent: j.Agent,
		Needs: j.Needs, Timeout: units.FormatDuration(j.Timeout), Network: string(j.Network),
		Secrets: j.Secrets, Concurrency: j.Concurrency, Steps: []string{},
		CPUs: j.Resources.CPUs, Memory: j.Resources.Memory, Pids: j.Resources.Pids,
		Line: j.DeclRange.Start.Line,
	}
	for _, s := range j.Steps {
		pj.Steps = append(pj.Steps, s.Name)
	}
	for _, c := range j.Caches {
		pj.Caches = append(pj.Caches, c.Name)
	}
	if j.Artifacts != nil {
		pj.Artifacts = j.Artifacts.Paths
	}
	for _, s := range j.Services {
		pj.Services = append(pj.Services, s.Name)
	}
	sort.Strings(pj.Caches)
	return pj
}
