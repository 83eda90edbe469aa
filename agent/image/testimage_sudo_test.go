package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestDebianSudoImage checks what the user-namespace tests take from the
// debian-sudo image of scripts/testimages.sh: sudo setuid root, the image
// user builder with passwordless sudo, apt's _apt user, and /opt/test.deb
// (files owned by builder) in the image's only, local apt source.
func TestDebianSudoImage(t *testing.T) {
	ref := testenv.Image(t, testenv.DebianSudo)
	s, _ := newStore(t, Options{})
	img, err := s.Resolve(context.Background(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "builder" {
		t.Errorf("image user %q, want builder", img.Config.User)
	}
	sn, err := s.Snapshot(context.Background(), img, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sn.Remove(); err != nil {
			t.Error(err)
		}
	}()
	root := sn.Rootfs()
	owned := func(p string, uid, gid uint32, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Error(err)
			return
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid || fi.Mode() != mode {
			t.Errorf("/%s: %d:%d %v, want %d:%d %v", p, st.Uid, st.Gid, fi.Mode(), uid, gid, mode)
		}
	}
	owned("usr/bin/sudo", 0, 0, os.ModeSetuid|0o755)
	owned("etc/sudoers.d/builder", 0, 0, 0o440)
	owned("home/builder", 1000, 1000, os.ModeDir|0o755)
	contains := func(p, want string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Error(err)
		} else if !strings.Contains(string(b), want) {
			t.Errorf("/%s has no %q:\n%s", p, want, b)
		}
	}
	contains("etc/sudoers.d/builder", "builder ALL=(ALL:ALL) NOPASSWD: ALL\n")
	contains("etc/passwd", "\nbuilder:x:1000:1000:")
	contains("etc/passwd", "\n_apt:x:42:65534:")
	contains("etc/apt/sources.list", "deb [trusted=yes] file:/opt ./\n")

	deb, err := os.ReadFile(filepath.Join(root, "opt/test.deb"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(deb)
	contains("opt/Packages", "Package: jobrun-test\n")
	contains("opt/Packages", "Filename: ./test.deb\nSize: "+strconv.Itoa(len(deb))+"\nSHA256: "+hex.EncodeToString(sum[:])+"\n")
	files, err := debFiles(deb)
	if err != nil {
		t.Fatalf("/opt/test.deb: %v", err)
	}
	for name, want := range map[string]string{
		"./opt/jobrun-test/":      "1000:1000 builder:builder drwxr-x---",
		"./opt/jobrun-test/owned": "1000:1000 builder:builder -rw-r-----",
	} {
		if got := files[name]; got != want {
			t.Errorf("/opt/test.deb: %s is %q, want %q", name, got, want)
		}
	}
}

// debFiles lists a .deb's data files as "uid:gid user:group mode".
func debFiles(deb []byte) (map[string]string, error) {
	r := bufio.NewReader(bytes.NewReader(deb))
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, errors.New("not an ar archive")
	}
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("no data.tar.gz member: %w", err)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ar member %s: size: %w", name, err)
		}
		body := make([]byte, size+size%2)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("ar member %s: %w", name, err)
		}
		if name != "data.tar.gz" {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(body[:size]))
		if err != nil {
			return nil, fmt.Errorf("data.tar.gz: %w", err)
		}
		out := map[string]string{}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("data.tar.gz: %w", err)
			}
			out[h.Name] = fmt.Sprintf("%d:%d %s:%s %v", h.Uid, h.Gid, h.Uname, h.Gname, h.FileInfo().Mode())
		}
	}
}
