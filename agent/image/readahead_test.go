package image

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadAhead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*readAheadChunk+100)/16)
	ra := newReadAhead(bytes.NewReader(data))
	got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 10)))
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("first bytes %q, %v", got, err)
	}
	rest, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("read %d of %d bytes, %v", len(got)+len(rest), len(data), err)
	}
	ra.Close()

	// The source's error comes after its data.
	boom := errors.New("boom")
	ra = newReadAhead(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)))
	got, err = io.ReadAll(ra)
	if !errors.Is(err, boom) || len(got) != 1000 {
		t.Errorf("got %d bytes, %v; want 1000 and boom", len(got), err)
	}
	ra.Close()

	// Close while the reader is blocked on a full queue returns.
	ra = newReadAhead(bytes.NewReader(bytes.Repeat(data, 8)))
	ra.Read(make([]byte, 1))
	ra.Close()
	ra.Close()
}
