package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtractTruncatedStreamFails: a stream cut in the middle of a file's
// data (larger than the 1 MiB copy buffer) is an error, not a short file
// taken for whole; the full stream is the positive control.
func TestExtractTruncatedStreamFails(t *testing.T) {
	const mib = 1 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*mib+100)/16)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()

	full := t.TempDir()
	if n, err := extract(context.Background(), bytes.NewReader(buf.Bytes()), full); err != nil || n != 1 {
		t.Fatalf("full stream: %d entries, %v", n, err)
	}
	if got, _ := os.ReadFile(filepath.Join(full, "f")); !bytes.Equal(got, data) {
		t.Fatalf("full stream: f has %d bytes, want %d", len(got), len(data))
	}
	cut := buf.Bytes()[:512+2*mib+7]
	if _, err := extract(context.Background(), bytes.NewReader(cut), t.TempDir()); err == nil {
		t.Fatal("stream cut inside f's data: no error")
	}
}

// TestExtractStreamCutBetweenEntriesFails: a stream that stops right after
// an entry, where archive/tar sees a clean end, is an error too; the same
// stream with its end-of-archive marker is the positive control.
func TestExtractStreamCutBetweenEntriesFails(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var cut int
	for i, name := range []string{"a", "b"} {
		data := bytes.Repeat([]byte{'x'}, 1000+i)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
		tw.Flush()
		if i == 0 {
			cut = buf.Len()
		}
	}
	tw.Close()

	if n, err := extract(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir()); err != nil || n != 2 {
		t.Fatalf("whole stream: %d entries, %v", n, err)
	}
	// Cut after a's data and padding, at a header boundary, and cut
	// inside the end marker.
	for _, at := range []int{cut, buf.Len() - 512} {
		_, err := extract(context.Background(), bytes.NewReader(buf.Bytes()[:at]), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "cut short") {
			t.Errorf("stream cut at %d of %d: %v, want a cut-short error", at, buf.Len(), err)
		}
	}
}
