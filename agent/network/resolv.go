package network

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// systemdResolvConf lists systemd-resolved's upstream servers, for hosts
// whose /etc/resolv.conf points at its 127.0.0.53 stub.
const systemdResolvConf = "/run/systemd/resolve/resolv.conf"

// resolvConf builds a job's resolv.conf from the host's file at path: its
// search and options lines, and its nameservers except loopback ones
// (127.0.0.0/8, ::1: the job's loopback is its own) and IPv6 ones (jobs
// have no IPv6 route). If only loopback servers are listed, the upstream
// servers of systemd-resolved are used when it publishes them.
func resolvConf(path string) (string, error) {
	out, servers, loopback, err := readResolv(path)
	if err != nil {
		return "", err
	}
	if servers == 0 && loopback && path != systemdResolvConf {
		if alt, n, _, err := readResolv(systemdResolvConf); err == nil && n > 0 {
			return alt, nil
		}
	}
	return out, nil
}

func readResolv(path string) (out string, servers int, loopback bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("read DNS settings: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			a, err := netip.ParseAddr(fields[1])
			if err != nil || a.Is6() && !a.Is4In6() {
				continue
			}
			if a.Unmap().IsLoopback() {
				loopback = true
				continue
			}
			servers++
		case "search", "domain", "options":
		default:
			continue
		}
		b.WriteString(strings.Join(fields, " ") + "\n")
	}
	if err := sc.Err(); err != nil {
		return "", 0, false, fmt.Errorf("read DNS settings %s: %w", path, err)
	}
	return b.String(), servers, loopback, nil
}
