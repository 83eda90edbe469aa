package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/api"
)

// The commands for the rest of the API: runs, jobs' logs, cancel, retry,
// secrets and agents.
func init() {
	commands = append(commands, newRunsCmd, newRunCmd, newLogsCmd, newCancelCmd, newRetryCmd, newSecretCmd, newAgentsCmd)
}

// idArg parses a run's or job's id argument.
func idArg(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, &usageError{fmt.Errorf("%s id %q: want a positive number", what, s)}
	}
	return id, nil
}

// idClient parses a command's RUN-ID or JOB-ID argument (what names
// which) and makes the API client.
func (f *clientFlags) idClient(g *globals, what, arg string) (int64, *api.Client, error) {
	id, err := idArg(what, arg)
	if err != nil {
		return 0, nil, err
	}
	c, err := f.client(g)
	return id, c, err
}

// notFound turns the API's 404 for a run or job into "no run N".
func notFound(err error, what string, id int64) error {
	if api.IsStatus(err, http.StatusNotFound) {
		return fmt.Errorf("no %s %d", what, id)
	}
	return err
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newRunsCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	var repo, branch string
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the server's runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			runs, err := c.Runs(cmd.Context(), repo, branch)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tREPO\tBRANCH\tCOMMIT\tTRIGGER\tSTATUS\tCREATED")
			for _, r := range runs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Repo, r.Branch, dash(short(r.Commit)), dash(r.Trigger), r.Status, when(&r.Created))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&repo, "repo", "", "only the runs of this repository")
	cmd.Flags().StringVar(&branch, "branch", "", "only the runs of this branch (pull/N for a pull request)")
	return cmd
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func newRunCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "run RUN-ID",
		Short: "Show a run and its jobs (their ids are what logs, cancel and retry take)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := f.idClient(g, "run", args[0])
			if err != nil {
				return err
			}
			r, err := c.Run(cmd.Context(), id)
			if err != nil {
				return notFound(err, "run", id)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "run %d: %s\n%s %s at %s (%s), file %s\ncreated %s, finished %s\n", r.ID, r.Status,
				r.Repo, r.Branch, dash(r.Commit), dash(r.Trigger), dash(r.File), when(&r.Created), when(r.Finished))
			if r.Reason != "" {
				fmt.Fprintf(out, "reason: %s\n", r.Reason)
			}
			fmt.Fprintln(out)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tNAME\tSTATUS\tATTEMPT\tAGENT\tSTARTED\tFINISHED\tREASON")
			for _, j := range r.Jobs {
				reason, _, _ := strings.Cut(j.Reason, "\n")
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", j.ID, j.Name, j.Status, j.Attempt, dash(j.Agent),
					when(j.Started), when(j.Finished), reason)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func newLogsCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs JOB-ID",
		Short: "Print a job's log (its latest attempt); with -f, follow it until the job ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := f.idClient(g, "job", args[0])
			if err != nil {
				return err
			}
			if follow {
				// A followed log lasts as long as the job: no overall
				// timeout, only the command's context.
				hc := *c.HTTP
				hc.Timeout = 0
				c.HTTP = &hc
			}
			return printLog(cmd.Context(), c, id, follow, cmd.OutOrStdout())
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing the log as the job writes it, until the job ends")
	return cmd
}

func printLog(ctx context.Context, c *api.Client, id int64, follow bool, out io.Writer) error {
	rc, err := c.Log(ctx, id, follow)
	if err != nil {
		return notFound(err, "job", id)
	}
	defer rc.Close()
	if _, err := io.Copy(out, rc); err != nil {
		return fmt.Errorf("log of job %d: %w", id, err)
	}
	return nil
}

func newCancelCmd(g *globals) *cobra.Command {
	return newJobActionCmd(g, "cancel", "Cancel a job that has not ended (the operate role)",
		func(ctx context.Context, c *api.Client, id int64) error { return c.Cancel(ctx, id) }, "cancelled")
}

func newRetryCmd(g *globals) *cobra.Command {
	return newJobActionCmd(g, "retry", "Queue an ended job again as a new attempt (the operate role)",
		func(ctx context.Context, c *api.Client, id int64) error { return c.Retry(ctx, id) }, "queued again")
}

func newJobActionCmd(g *globals, name, short string, do func(context.Context, *api.Client, int64) error, done string) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   name + " JOB-ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := f.idClient(g, "job", args[0])
			if err != nil {
				return err
			}
			if err := do(cmd.Context(), c, id); err != nil {
				var se *api.StatusError
				if errors.As(err, &se) && se.Code != http.StatusNotFound && se.Code < 500 && se.Code != http.StatusUnauthorized && se.Code != http.StatusForbidden {
					return fmt.Errorf("%s job %d: %s", name, id, se.Message)
				}
				return notFound(err, "job", id)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %d %s\n", id, done)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store and list a repository's secrets (the admin role)",
		Long: `Secrets are sealed by the server with its secret key file and given to the
jobs of the repository that name them in their secrets list, on the branches
--branch selects (all when none), never to untrusted runs.`,
	}
	cmd.AddCommand(newSecretSetCmd(g), newSecretListCmd(g))
	return cmd
}

func newSecretSetCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	var branches []string
	cmd := &cobra.Command{
		Use:   "set REPO NAME",
		Short: "Store a secret, its value read from standard input (one trailing newline dropped)",
		Long: `Store a secret of a registered repository. The value is read from standard
input, so it stays out of the shell's history and the process list:

  printf %s "$TOKEN" | jobrun secret set myrepo DEPLOY_KEY
  jobrun secret set myrepo DEPLOY_KEY --branch main --branch 'release/*' < key.txt`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20+1))
			if err != nil {
				return fmt.Errorf("secret %s: read the value from standard input: %w", args[1], err)
			}
			if len(data) > 1<<20 {
				return &usageError{fmt.Errorf("secret %s: the value on standard input is over 1 MiB", args[1])}
			}
			v := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
			if v == "" {
				return &usageError{fmt.Errorf("secret %s: standard input is empty: give the value there", args[1])}
			}
			c, err := f.client(g)
			if err != nil {
				return err
			}
			if err := c.SetSecret(cmd.Context(), args[0], args[1], api.SetSecret{Value: v, Branches: branches}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s of %s stored\n", args[1], args[0])
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringArrayVar(&branches, "branch", nil, "a branch glob the secret is given to (repeatable; default all branches)")
	return cmd
}

func newSecretListCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:     "ls REPO",
		Aliases: []string{"list"},
		Short:   "List a repository's secrets by name (never their values)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			ss, err := c.Secrets(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tBRANCHES")
			for _, s := range ss {
				b := "all"
				if len(s.Branches) > 0 {
					b = strings.Join(s.Branches, ", ")
				}
				fmt.Fprintf(tw, "%s\t%s\n", s.Name, b)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func newAgentsCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List the pool's agents and the jobs they run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			as, err := c.Agents(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tONLINE\tLABELS\tBUSY\tJOBS\tLAST SEEN\tVERSION")
			for _, a := range as {
				var running []string
				for _, r := range a.Running {
					running = append(running, fmt.Sprintf("%d#%d", r.Job, r.Attempt))
				}
				online := "no"
				if a.Online {
					online = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", a.Name, a.ID, online, dash(strings.Join(a.Labels, ",")),
					a.Busy, a.Slots, dash(strings.Join(running, " ")), when(&a.LastSeen), dash(a.Version))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}
