package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newCacheCmd) }

func newCacheCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List and prune the dependency cache volumes of this host",
	}
	open := func() (*cache.Manager, error) {
		return cache.Open(filepath.Join(g.stateDir, "caches"), cache.Options{Logger: g.log})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List cache volumes, most recently used first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := open()
			if err != nil {
				return err
			}
			vols, err := m.List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "REPOSITORY\tNAME\tKEY\tSIZE\tLAST USED\tUSES\tSTATE")
			var total int64
			for _, v := range vols {
				state := "idle"
				if v.InUse {
					state = "in use"
				}
				key := v.Key
				if key == "" {
					key = "-"
				}
				ago := units.FormatDuration(time.Since(v.LastUsed).Round(time.Second)) + " ago"
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Repo, v.Name, key, units.FormatSize(v.Size), ago, v.Uses, state)
				total += v.Size
			}
			fmt.Fprintf(w, "%d volumes\t\t\t%s\t\t\t\n", len(vols), units.FormatSize(total))
			return w.Flush()
		},
	})
	var keep string
	var all bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove leftovers of killed jobs and evict volumes not in use (least recently used first)",
		Long: "prune first removes what killed processes left (private overlays, stale locks), then\n" +
			"evicts idle volumes, least recently used first, until the total is at most --keep;\n" +
			"with --all it evicts every idle volume. Volumes in use are never touched.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var budget int64
			switch {
			case all && keep != "":
				return &usageError{fmt.Errorf("--all and --keep exclude each other")}
			case !all && keep == "":
				return &usageError{fmt.Errorf("say what to keep: --keep SIZE (like 20GiB) or --all")}
			case keep != "":
				n, err := units.ParseSize(keep)
				if err != nil {
					return &usageError{fmt.Errorf("--keep: %w", err)}
				}
				budget = n
			}
			m, err := open()
			if err != nil {
				return err
			}
			if err := m.Cleanup(cmd.Context()); err != nil {
				return err
			}
			removed, err := m.Prune(cmd.Context(), budget)
			var freed int64
			for _, v := range removed {
				freed += v.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "evicted %d volumes, freed %s\n", len(removed), units.FormatSize(freed))
			return err
		},
	}
	prune.Flags().StringVar(&keep, "keep", "", "evict until the total size is at most this (like 20GiB)")
	prune.Flags().BoolVar(&all, "all", false, "evict every volume not in use")
	cmd.AddCommand(prune)
	return cmd
}
