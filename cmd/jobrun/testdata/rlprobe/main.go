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
//	rlprobe handle SOCK  listens on the unix socket SOCK and receives two
//	                     namespace files (a user and a network one, sent with
//	                     SCM_RIGHTS) and tries to join each: setns for the
//	                     network one, busybox's single-threaded nsenter for
//	                     the user one (setns refuses a user namespace to a
//	                     threaded process with EINVAL before it looks at
//	                     capabilities)
//	rlprobe setns-net PATH  setns to the network namespace at PATH
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	case "handle":
		fmt.Println("handle: " + handle(os.Args[2]))
	case "setns-net":
		f, err := os.Open(os.Args[2])
		if err != nil {
			fmt.Println(word(err))
			return
		}
		fmt.Println(word(unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)))
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

func handle(sock string) string {
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return word(err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: sock}); err != nil {
		return "bind: " + word(err)
	}
	if err := unix.Listen(l, 1); err != nil {
		return "listen: " + word(err)
	}
	fmt.Println("waiting-for-handle")
	fd, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
	if err != nil {
		return "accept: " + word(err)
	}
	defer unix.Close(fd)
	oob := make([]byte, unix.CmsgSpace(2*4))
	_, oobn, _, _, err := unix.Recvmsg(fd, make([]byte, 1), oob, 0)
	if err != nil {
		return "recvmsg: " + word(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Sprintf("error: %d control messages, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 2 {
		return fmt.Sprintf("error: %d fds, %v", len(fds), err)
	}
	netw := word(unix.Setns(fds[1], unix.CLONE_NEWNET))
	cmd := exec.Command("nsenter", "--user=/proc/self/fd/3", "true")
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fds[0]), "userns")}
	user := "ok"
	if out, err := cmd.CombinedOutput(); err != nil {
		user = "error: " + strings.TrimSpace(string(out))
		if strings.Contains(string(out), "setns") && strings.Contains(string(out), "Operation not permitted") {
			user = "EPERM"
		}
	}
	return "setns-net=" + netw + " setns-user=" + user
}

func word(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error: " + err.Error()
}
