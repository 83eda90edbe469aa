package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/api"
)

func init() { commands = append(commands, newTokenCmd) }

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make, list and remove the server's API and agent registration tokens",
		Long: `Tokens are kept by the server as hashes in its database, with a name, a
role and an optional expiry. Roles: read (runs, logs, artifacts, agents,
metrics), operate (also cancel, retry, trigger), admin (also the runs API,
repositories, secrets and tokens), and agent: a registration token that admits
agents with the --labels it lists to the jobs and secrets of the repositories
its --repos globs match.`,
	}
	cmd.AddCommand(newTokenAddCmd(g), newTokenListCmd(g), newTokenRemoveCmd(g))
	return cmd
}

func newTokenAddCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	var nt api.NewToken
	var role string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Make a token and print it (it is shown only once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := api.ParseRole(role)
			if err != nil {
				return &usageError{fmt.Errorf("--role: %w", err)}
			}
			if expires < 0 {
				return &usageError{errors.New("--expires: want a positive duration")}
			}
			if r == api.RoleAgent && len(nt.Repos) == 0 {
				return &usageError{errors.New(`an agent token needs --repos (globs of repositories; "**" for all)`)}
			}
			c, err := f.client(g)
			if err != nil {
				return err
			}
			nt.Name, nt.Role, nt.Expires = args[0], r, api.Duration(expires)
			t, err := c.AddToken(cmd.Context(), nt)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "read", "read, operate, admin or agent")
	fl.DurationVar(&expires, "expires", 0, "how long the token lives (0: until removed)")
	fl.StringSliceVar(&nt.Labels, "labels", nil, "agent tokens: the labels its agents may register (comma-separated)")
	fl.StringSliceVar(&nt.Repos, "repos", nil, `agent tokens: globs of the repositories whose jobs and secrets its agents receive ("org/*", "**")`)
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the tokens (names and roles, never the tokens)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tEXPIRES\tLABELS\tREPOS")
			for _, t := range ts {
				exp := "never"
				if t.Expires != nil {
					exp = t.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.Created.UTC().Format(time.RFC3339), exp,
					orDash(t.Labels), orDash(t.Repos))
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func orDash(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return fmt.Sprint(l)
}

func newTokenRemoveCmd(g *globals) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a token: its web sessions end and the agents it admitted leave the pool",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			if err := c.RemoveToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s removed\n", args[0])
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
