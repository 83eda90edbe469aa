// Command rlprobe asks the kernel about a process's namespaces, for
// TestRootlessEscapes: it prints one word per check ("ok", the errno's
// name, or a namespace's inode), so a refused call and a broken probe
// cannot be mistaken for each other. Built static, it runs in any image.
//
//	rlprobe parent PATH  NS_GET_PARENT on the user namespace at PATH: the
//	                     parent's inode, or the errno
//	rlprobe owners       NS_GET_USERNS on each of /proc/self/ns/*:
//	                     "own:NAMES" for those this process's user
//	                     namespace owns, "refused:NAMES" for those whose
//	                     owner the kernel will not hand out (outside its
//	                     scope), and NAME=INODE for any other owner
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The nsfs ioctls (linux/nsfs.h): _IO(0xb7, 1) and _IO(0xb7, 2).
const (
	nsGetUserns = 0xb701
	nsGetParent = 0xb702
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rlprobe parent PATH | owners")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "parent":
		fmt.Println(related(os.Args[2], nsGetParent))
	case "owners":
		fmt.Println(owners())
	default:
		fmt.Fprintf(os.Stderr, "rlprobe: unknown check %q\n", os.Args[1])
		os.Exit(2)
	}
}

// related opens the namespace at path and asks for the one req names,
// printing its inode.
func related(path string, req uint) string {
	f, err := os.Open(path)
	if err != nil {
		return word(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), req)
	if err != nil {
		return word(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return word(err)
	}
	return fmt.Sprint(st.Ino)
}

func owners() string {
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		return word(err)
	}
	paths, _ := filepath.Glob("/proc/self/ns/*")
	if len(paths) < 5 {
		return "too few namespaces: " + strings.Join(paths, " ")
	}
	var mine, refused, odd []string
	for _, p := range paths {
		name := filepath.Base(p)
		if name == "user" {
			continue
		}
		switch got := related(p, nsGetUserns); got {
		case fmt.Sprint(own.Ino):
			mine = append(mine, name)
		case "EPERM":
			refused = append(refused, name)
		default:
			odd = append(odd, name+"="+got)
		}
	}
	out := "own:" + strings.Join(mine, ",")
	if len(refused) > 0 {
		out += " refused:" + strings.Join(refused, ",")
	}
	if len(odd) > 0 {
		out += " " + strings.Join(odd, " ")
	}
	return out
}

func word(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error: " + err.Error()
}
