package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/api"
)

func init() { commands = append(commands, newRepoCmd, newTriggerCmd) }

// clientFlags are the flags of commands that talk to a server's API.
type clientFlags struct {
	server     string
	adminToken string
	apiToken   string
	cmd        *cobra.Command // the command the flags are on, for messages
}

func (f *clientFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.Flags().StringVar(&f.server, "server", "http://127.0.0.1:8080", "the scheduler's URL")
	cmd.Flags().StringVar(&f.adminToken, "admin-token", "", "the server's admin token (default: STATE_DIR/admin-token, where a local server keeps it)")
	cmd.Flags().StringVar(&f.apiToken, "api-token", "", "a token made with 'jobrun token add' to use instead of the admin token (its role must allow the command)")
	sharedEnv(cmd.Flags().Lookup("api-token"), "JOBRUN_API_TOKEN")
}

// client makes the API client: with --api-token, or the admin token, read
// from the state dir where a server on this host keeps it when none is
// given.
func (f *clientFlags) client(g *globals) (*api.Client, error) {
	tok := f.adminToken
	if f.apiToken != "" {
		tok = f.apiToken
	}
	if tok == "" {
		data, err := os.ReadFile(filepath.Join(g.stateDir, "admin-token"))
		if err != nil {
			return nil, &usageError{fmt.Errorf("--api-token or --admin-token is required (or %s, %s): %w",
				flagEnv(f.cmd, "api-token"), flagEnv(f.cmd, "admin-token"), err)}
		}
		tok = strings.TrimSpace(string(data))
	}
	return &api.Client{Base: f.server, Token: tok, HTTP: &http.Client{Timeout: time.Minute}}, nil
}

func newRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Register repositories whose webhooks, cron triggers and manual runs the server acts on",
	}
	cmd.AddCommand(newRepoAddCmd(g), newRepoListCmd(g))
	return cmd
}

type repoAddFlags struct {
	clientFlags
	api.NewRepo
	sshKeyFile string
}

func newRepoAddCmd(g *globals) *cobra.Command {
	f := &repoAddFlags{}
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Register a repository (or change its settings)",
		Long: `Register a repository with the server. Its forge's webhook then posts to
SERVER/hooks/FORGE/NAME (FORGE: github, gitlab or gitea) signed with --secret;
the server mirrors --url, reads .ci.hcl at the pushed commit and queues the
jobs its on blocks select. With --token (HTTPS) or --ssh-key (ssh:// URLs)
the server and the agents fetch with those credentials, and with --forge and
--token the server sends commit statuses back. Settings left out of a
second add keep their stored values only for the secret, token and key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return repoAdd(cmd.Context(), g, f, args[0], cmd.OutOrStdout())
		},
	}
	f.clientFlags.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.CloneURL, "url", "", "the clone URL (https://, ssh:// or a path)")
	fl.StringVar(&f.Secret, "secret", "", "the webhook secret the forge signs deliveries with")
	fl.StringVar(&f.Token, "token", "", "an HTTPS access token: cloning and commit statuses")
	fl.StringVar(&f.sshKeyFile, "ssh-key", "", "a file holding the SSH private key for an ssh:// URL")
	fl.StringVar(&f.Forge, "forge", "", "github, gitlab or gitea: where commit statuses go")
	fl.StringVar(&f.APIURL, "api-url", "", "the forge's API base (default https://api.github.com, https://gitlab.com/api/v4; Gitea: https://HOST/api/v1)")
	fl.StringVar(&f.ForgeRepo, "forge-repo", "", "the repository's path on the forge (default: from --url)")
	fl.StringVar(&f.DefaultBranch, "default-branch", "main", "the branch whose .ci.hcl holds the cron schedules")
	fl.IntVar(&f.Depth, "depth", 0, "agents fetch this many commits per ref (0: full history)")
	fl.BoolVar(&f.Submodules, "submodules", false, "agents fill the repository's submodules (http(s) and ssh URLs)")
	return cmd
}

func repoAdd(ctx context.Context, g *globals, f *repoAddFlags, name string, out io.Writer) error {
	if f.CloneURL == "" {
		return &usageError{errors.New("--url is required")}
	}
	if f.Token != "" && f.sshKeyFile != "" {
		return &usageError{errors.New("give --token or --ssh-key, not both")}
	}
	if f.sshKeyFile != "" {
		key, err := os.ReadFile(f.sshKeyFile)
		if err != nil {
			return fmt.Errorf("--ssh-key: %w", err)
		}
		f.SSHKey = string(key)
	}
	c, err := f.client(g)
	if err != nil {
		return err
	}
	f.Name = name
	r, err := c.AddRepo(ctx, f.NewRepo)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "repository %s registered: %s\nwebhook: %s/hooks/%s/%s\n", r.Name, r.CloneURL,
		strings.TrimSuffix(f.server, "/"), forgeOr(r.Forge), r.Name)
	return nil
}

func forgeOr(f string) string {
	if f == "" {
		return "{github|gitlab|gitea}"
	}
	return f
}

func newRepoListCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the registered repositories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			repos, err := c.Repos(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tURL\tFORGE\tSECRET\tTOKEN\tSSH KEY\tSCHEDULES")
			yes := map[bool]string{true: "yes", false: "-"}
			for _, r := range repos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.CloneURL, forgeOr(r.Forge), yes[r.HasSecret], yes[r.HasToken],
					yes[r.HasSSHKey], strings.Join(r.Schedules, ", "))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func newTriggerCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	var jobsSel []string
	var env []string
	cmd := &cobra.Command{
		Use:   "trigger REPO BRANCH",
		Short: "Run a branch's head now, as the server's mirror of the repository has it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			t := api.TriggerRun{Branch: args[1], Jobs: jobsSel}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return &usageError{fmt.Errorf("--env %q: want K=V", kv)}
				}
				if t.Env == nil {
					t.Env = map[string]string{}
				}
				t.Env[k] = v
			}
			run, err := c.Trigger(cmd.Context(), args[0], t)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run %d queued: %s %s at %s, %d jobs\n", run.ID, run.Repo, run.Branch, run.Commit, len(run.Jobs))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringArrayVar(&jobsSel, "job", nil, "run only this job and what it needs (repeatable; one name per flag, commas and all, e.g. 'build (arch=amd64, os=linux)' for one matrix combination)")
	cmd.Flags().StringArrayVar(&env, "env", nil, "add K=V to every job's environment (repeatable)")
	return cmd
}
