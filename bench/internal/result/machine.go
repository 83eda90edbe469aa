package result

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine is what a reader needs to weigh a bench's figures: where it ran
// and how busy the machine was when it started.
type Machine struct {
	Kernel string     `json:"kernel"`        // uname -r
	Cgroup string     `json:"cgroup"`        // "v2", "v1" or "hybrid" (v1 with a v2 tree)
	Cores  int        `json:"cores"`         // CPUs this process may use
	CPU    string     `json:"cpu,omitempty"` // model name
	Load   [3]float64 `json:"load"`          // load average over 1, 5 and 15 minutes at the start
	Go     string     `json:"go"`            // the Go toolchain the bench was built with
}

// ReadMachine reads the machine's facts now; a fact it cannot read stays
// empty.
func ReadMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Cgroup: cgroupVersion()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			m.Load[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	if fh, err := os.Open("/proc/cpuinfo"); err == nil {
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func cgroupVersion() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) != nil {
		return ""
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2"
	}
	if unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid"
	}
	return "v1"
}
