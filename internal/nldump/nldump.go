// Package nldump retries netlink dumps that the kernel interrupted.
//
// A netlink dump (links, addresses, routes) is marked interrupted when the
// table changes while it is read; vishvananda/netlink then returns what it
// read with ErrDumpInterrupted. On a host where other jobs' veths come and
// go that happens in ordinary operation, and the answer is to read again.
package nldump

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// attempts bounds the re-reads: a table that changes on every read of
// ten is not one a caller can decide anything from.
const attempts = 10

// Retry calls dump until it returns without ErrDumpInterrupted, at most
// ten times; the last interrupted result comes back with its error.
func Retry[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range attempts {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
