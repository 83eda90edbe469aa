// Command probe tries one thing a job must not be able to do and prints
// the outcome as one word: "ok", "eof" (a read found nothing), or the
// errno's name ("EPERM"). The sandbox tests run it inside containers and
// compare the word exactly, so a blocked probe and a broken probe cannot
// be mistaken for each other. It is built static (CGO_ENABLED=0) so it
// runs in any rootfs.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe CHECK [ARG]")
		os.Exit(2)
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	var out string
	switch os.Args[1] {
	case "mount":
		out = mount()
	case "open-write":
		out = word(openWrite(arg))
	case "read":
		out = read(arg)
	case "stat":
		_, err := os.Stat(arg)
		out = word(err)
	case "module":
		out = module()
	case "mknod-block":
		out = word(unix.Mknod(arg, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	case "unshare-user":
		out = unshareUser()
	case "ptrace":
		out = ptrace(arg)
	case "hostname":
		out, _ = os.Hostname()
	case "alloc":
		out = alloc(arg)
	case "euid":
		out = fmt.Sprint(os.Geteuid())
	case "true":
		out = "ok"
	case "sethostname":
		out = word(unix.Sethostname([]byte(arg)))
	case "bind-port":
		out = bindPort(arg)
	case "ping-socket":
		out = pingSocket()
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown check %q\n", os.Args[1])
		os.Exit(2)
	}
	fmt.Println(out)
}

// word names err's errno, or says "ok".
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

func mount() string {
	dir, err := os.MkdirTemp("", "probe")
	if err != nil {
		return word(err)
	}
	err = unix.Mount("probe", dir, "tmpfs", 0, "size=1m")
	if err == nil {
		unix.Unmount(dir, 0)
	}
	return word(err)
}

func openWrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	return err
}

func read(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return word(err)
	}
	defer f.Close()
	n, err := f.Read(make([]byte, 64))
	if n > 0 {
		return "ok"
	}
	if err == nil || err.Error() == "EOF" {
		return "eof"
	}
	return word(err)
}

// module tries both module-loading system calls with an empty image:
// blocked, they fail with EPERM before the kernel looks at the image;
// allowed, the kernel rejects the image (ENOEXEC, EINVAL...) or has no
// module support (ENOSYS).
func module() string {
	f, err := os.CreateTemp("", "probe-module")
	if err != nil {
		return word(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	_, _, e1 := unix.Syscall(unix.SYS_FINIT_MODULE, f.Fd(), uintptr(unsafeEmpty()), 0)
	buf := make([]byte, 16)
	_, _, e2 := unix.Syscall(unix.SYS_INIT_MODULE, uintptr(unsafePtr(buf)), uintptr(len(buf)), uintptr(unsafeEmpty()))
	return "finit=" + errnoWord(e1) + " init=" + errnoWord(e2)
}

func errnoWord(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return unix.ErrnoName(e)
}

// unshareUser starts a child that unshares a user namespace before it
// execs (unshare(2) refuses CLONE_NEWUSER in a multi-threaded process, so
// it must happen in the single-threaded child).
func unshareUser() string {
	cmd := exec.Command("/proc/self/exe", "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWUSER}
	return word(cmd.Run())
}

func ptrace(arg string) string {
	pid, err := strconv.Atoi(arg)
	if err != nil {
		return "error: bad pid " + arg
	}
	// Every ptrace request must come from the thread that attached.
	runtime.LockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		return word(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return "error: wait: " + err.Error()
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return "error: detach: " + err.Error()
	}
	return "ok"
}

func alloc(arg string) string {
	n, err := strconv.ParseInt(strings.TrimSuffix(arg, "M"), 10, 64)
	if err != nil {
		return "error: bad size " + arg
	}
	// Touch every page so the memory is really charged.
	var chunks [][]byte
	for i := int64(0); i < n; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		chunks = append(chunks, b)
	}
	runtime.KeepAlive(chunks)
	return "ok"
}

// bindPort binds a TCP socket to 127.0.0.1:port.
func bindPort(port string) string {
	n, err := strconv.Atoi(port)
	if err != nil {
		return word(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return word(err)
	}
	defer unix.Close(fd)
	return word(unix.Bind(fd, &unix.SockaddrInet4{Port: n, Addr: [4]byte{127, 0, 0, 1}}))
}

// pingSocket opens an ICMP echo socket (what ping uses without CAP_NET_RAW).
func pingSocket() string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err == nil {
		unix.Close(fd)
	}
	return word(err)
}
