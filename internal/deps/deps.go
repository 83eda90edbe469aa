//go:build tools

// Package deps pins the libraries the packages are being built on while they
// land, so concurrent work does not race on go.mod. Removed once every
// import below is used by real code.
package deps

import (
	_ "github.com/agext/levenshtein"
	_ "github.com/bmatcuk/doublestar/v4"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/hcl/v2/hclsyntax"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/moby/profiles/seccomp"
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/specconv"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/opencontainers/umoci/oci/layer"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/robfig/cron/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/zclconf/go-cty/cty"
	_ "golang.org/x/sys/unix"
	_ "modernc.org/sqlite"
)
