package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CABundlePath is where a container with Spec.CACerts finds its whole CA
// bundle (its image's system bundle plus the extra certificates), whatever
// its image: in the container's own /dev, like the launcher, so no job's
// root filesystem gets a file made for it. The agent points SSL_CERT_FILE
// and the like at it.
const CABundlePath = "/dev/.jobrun/ca-certificates.crt"

// CAExtraPath is where a container with Spec.CACerts finds the extra
// certificates alone: for trust stores that must import them one by one,
// such as a JDK's cacerts.
const CAExtraPath = "/dev/.jobrun/extra-ca-certificates.crt"

// imageBundles are the system CA bundles of the common distributions, each
// of which the bundle is mounted over where the image has it. Several are
// symbolic links to another (Alpine's cert.pem, RHEL's ca-bundle.crt).
var imageBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Alpine
	"/etc/ssl/cert.pem",                                 // Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",                  // RHEL, Fedora
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL, Fedora
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
}

// maxImageBundle bounds what is read of an image's bundles, together.
const maxImageBundle = 16 << 20

// caBundleFile and caExtraFile are the names of the bundle and of the
// extra certificates alone in the container's files directory.
const (
	caBundleFile = "ca-certificates.crt"
	caExtraFile  = "extra-ca-certificates.crt"
)

// writeCABundle writes into dir the bundle of a container whose root is
// rootfs (the image's own bundles, then extra) and extra alone. It returns
// the paths in the container that hold one of the image's bundles (at the
// distributions' paths or more), which the bundle is mounted over
// read-only.
//
// The image is never written, and read only inside its root: a bundle
// path is often a symbolic link, and an image may point one at a host file
// ("/etc/shadow", "../../../../etc/shadow"). openat2's RESOLVE_IN_ROOT
// resolves every link as the container would, within rootfs, and the
// mount targets are the files that resolution reached, regular files of
// the image only.
func writeCABundle(dir, rootfs string, extra []byte, more ...string) ([]string, error) {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: open rootfs: %w", err)
	}
	defer unix.Close(root)
	realRoot, err := fdPath(root)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	var bundle bytes.Buffer
	var targets []string
	for _, p := range slices.Concat(imageBundles, more) {
		if !filepath.IsAbs(p) {
			continue
		}
		target, data, err := readInRoot(root, realRoot, p, maxImageBundle-bundle.Len())
		if err != nil {
			return nil, fmt.Errorf("CA bundle: image's %s: %w", p, err)
		}
		if target == "" || slices.Contains(targets, target) || kernelPath(target) {
			continue
		}
		targets = append(targets, target)
		bundle.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			bundle.WriteByte('\n')
		}
	}
	bundle.Write(extra)
	if err := os.WriteFile(filepath.Join(dir, caBundleFile), bundle.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, caExtraFile), extra, 0o644); err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	return targets, nil
}

// readInRoot opens p inside root, following links as if root were "/",
// and returns the path in root of the regular file it reached and its
// contents, at most limit bytes. A path that leads nowhere, or to anything
// but a regular file, gives "" and no error: the image has no bundle
// there.
func readInRoot(root int, realRoot, p string, limit int) (string, []byte, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(root, strings.TrimPrefix(p, "/"), how)
	// The kernel answers EAGAIN when a rename or a mount anywhere on the
	// host raced the resolution: a busy host's normal, worth a retry.
	for i := 0; errors.Is(err, unix.EAGAIN) && i < 100; i++ {
		fd, err = unix.Openat2(root, strings.TrimPrefix(p, "/"), how)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) ||
			errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENXIO) {
			return "", nil, nil
		}
		return "", nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	if !st.Mode().IsRegular() {
		return "", nil, nil
	}
	full, err := fdPath(fd)
	if err != nil {
		return "", nil, err
	}
	rel, ok := strings.CutPrefix(full, strings.TrimSuffix(realRoot, "/")+"/")
	if !ok {
		return "", nil, fmt.Errorf("resolved to %s, outside the root", full)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return "", nil, err
	}
	if len(data) > limit {
		return "", nil, fmt.Errorf("the image's bundles are larger than %d MiB", maxImageBundle>>20)
	}
	return "/" + rel, data, nil
}

// kernelPath reports whether p is under the container's own /proc, /sys or
// /dev, mounted over the image's: a bundle link that leads there names no
// bundle (and libcontainer refuses mounts into /proc).
func kernelPath(p string) bool {
	for _, d := range []string{"/proc/", "/sys/", "/dev/"} {
		if strings.HasPrefix(p, d) {
			return true
		}
	}
	return false
}

// fdPath is the path the kernel has for an open file.
func fdPath(fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("path of fd %d: %w", fd, err)
	}
	return p, nil
}

// CABundleTargets are the image's bundle paths the container's CA bundle
// is mounted over (see Spec.CACerts), besides CABundlePath.
func (c *Container) CABundleTargets() []string { return slices.Clone(c.spec.caTargets) }
