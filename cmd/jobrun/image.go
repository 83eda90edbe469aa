package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/internal/units"
)

func init() { commands = append(commands, newImageCmd) }

func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Manage the host's image store: pull, import, ls, rm, prune",
	}
	c.AddCommand(newImagePullCmd(g), newImageImportCmd(g), newImageLsCmd(g), newImageRmCmd(g), newImagePruneCmd(g))
	return c
}

func newImagePullCmd(g *globals) *cobra.Command {
	var user, password string
	c := &cobra.Command{
		Use:   "pull REF...",
		Short: "Pull images from their registry (through the configured mirrors) into the store",
		Long: `Pull images by reference, as Docker names them (busybox, golang:1.26,
ghcr.io/o/r@sha256:...), or oci-layout:PATH[:tag]. Blobs already in the store
are not downloaded again. Credentials come from --user and --password (env
JOBRUN_IMAGE_PULL_PASSWORD) for every host named, then from the config's
registry logins (username, password_file or password_env), then from
~/.docker/config.json.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := g.openImages(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var creds []image.Credential
			if user != "" {
				for _, a := range args {
					if r, err := image.ParseRef(a); err == nil {
						creds = append(creds, image.Credential{Registry: r.Registry(), Username: user, Password: password})
					}
				}
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			for _, a := range args {
				var img *image.Image
				if strings.HasPrefix(a, image.LayoutPrefix) {
					img, err = st.Resolve(cmd.Context(), a, wd)
				} else {
					img, err = st.Pull(cmd.Context(), a, creds...)
				}
				if err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.Ref, img.Digest)
			}
			return nil
		},
	}
	c.Flags().StringVar(&user, "user", "", "registry user name")
	c.Flags().StringVar(&password, "password", "", "registry password or token")
	return c
}

func newImageImportCmd(g *globals) *cobra.Command {
	var as string
	c := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import OCI archives and docker save archives into the store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if as != "" && len(args) > 1 {
				return &usageError{fmt.Errorf("--as names the image of one archive, got %d files", len(args))}
			}
			st, _, err := g.openImages(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			for _, f := range args {
				imgs, err := st.Import(cmd.Context(), f, as)
				if err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
				for _, img := range imgs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.Ref, img.Digest)
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&as, "as", "", "reference to store the archive's (only) image as")
	return c
}

func newImageLsCmd(g *globals) *cobra.Command {
	var quiet bool
	c := &cobra.Command{
		Use:   "ls",
		Short: "List the images in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := g.openImages(nil)
			if err != nil {
				return err
			}
			imgs, err := st.List()
			if err != nil {
				return err
			}
			if quiet {
				for _, img := range imgs {
					fmt.Fprintln(cmd.OutOrStdout(), img.Ref)
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tDIGEST\tLAYERS\tSIZE\tSTORED")
			for _, img := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", img.Ref, shortDigest(img.Digest), len(img.Layers),
					units.FormatSize(img.Size()), img.Created.Local().Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the references")
	return c
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func newImageRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm REF...",
		Short: "Forget images; `jobrun image prune` then frees their space",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := g.openImages(nil)
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := st.Remove(a); err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
			}
			return nil
		},
	}
}

func newImagePruneCmd(g *globals) *cobra.Command {
	var budget string
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove unpacked layers and blobs no image uses; with --budget, forget least recently used images first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var max int64
			if budget != "" {
				var err error
				if max, err = units.ParseSize(budget); err != nil {
					return &usageError{fmt.Errorf("--budget: %w", err)}
				}
			}
			st, _, err := g.openImages(nil)
			if err != nil {
				return err
			}
			res, err := st.Prune(cmd.Context(), max)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			for _, r := range res.Images {
				fmt.Fprintf(cmd.OutOrStdout(), "forgot %s\n", r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d layers and %d blobs, freed %s\n", res.Layers, res.Blobs, units.FormatSize(res.Freed))
			return nil
		},
	}
	c.Flags().StringVar(&budget, "budget", "", "disk budget for the image store, e.g. 20GiB (default: no budget)")
	return c
}
