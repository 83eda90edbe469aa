package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/rootless"
)

// idMap is one map rootlessReexec writes for its child: bin (newuidmap or
// newgidmap) maps the namespace's 0 to own and 1 and up to ranges.
type idMap struct {
	bin    string
	own    int
	ranges []rootless.Range
}

// writeMaps writes the child pid's maps, each through its setuid tool,
// both at once: they are independent, and each is a process start on the
// way to every job (issue #18's bench).
func writeMaps(pid string, maps ...idMap) error {
	errs := make(chan error, len(maps))
	for _, m := range maps {
		go func() {
			args := rootless.MapArgs(m.own, m.ranges)
			out, err := exec.Command(m.bin, append([]string{pid}, args...)...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%s %s: %s: %w", filepath.Base(m.bin), strings.Join(args, " "), strings.TrimSpace(string(out)), err)
			}
			errs <- err
		}()
	}
	var all []error
	for range maps {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
