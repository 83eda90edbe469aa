package web

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// memLog reads a log held in memory, as the store does: at most max bytes.
func memLog(data []byte) ReadLogFunc {
	return func(_ context.Context, from, max int64) ([]byte, error) {
		if from >= int64(len(data)) {
			return nil, nil
		}
		return data[from:min(int64(len(data)), from+max)], nil
	}
}

// TestLinesAfterOverlongLineAreRead: a line over MaxLogLine is reported
// by its size and the lines after it are read (they used to vanish, the
// scanner's error unnoticed), holding no more than a page and a line.
func TestLinesAfterOverlongLineAreRead(t *testing.T) {
	var log bytes.Buffer
	log.WriteString("first\n")
	log.WriteString(strings.Repeat("x", 3*MaxLogLine+5) + "\n")
	log.WriteString("after\nlast-without-newline")
	lr := NewLineReader(memLog(log.Bytes()), 0)
	var got []string
	for {
		l, ok, err := lr.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if l.TooLong {
			got = append(got, fmt.Sprintf("long:%d@%d", l.Size, l.Off))
		} else {
			got = append(got, string(l.Data))
		}
		if cap(lr.mem) > MaxLogLine+LogPage {
			t.Fatalf("the reader holds %d bytes", cap(lr.mem))
		}
	}
	want := fmt.Sprintf("first long:%d@6 after", 3*MaxLogLine+6)
	if strings.Join(got, " ") != want || string(lr.Rest()) != "last-without-newline" {
		t.Fatalf("lines %q, rest %q; want %q", got, lr.Rest(), want)
	}
	// The positive control: short lines come back whole with offsets.
	lr = NewLineReader(memLog([]byte("a\nbb\n")), 0)
	if l, ok, _ := lr.Next(context.Background()); !ok || string(l.Data) != "a" || l.Off != 0 {
		t.Fatalf("first line %+v", l)
	}
	if l, ok, _ := lr.Next(context.Background()); !ok || string(l.Data) != "bb" || l.Off != 2 || lr.Offset() != 5 {
		t.Fatalf("second line %+v", l)
	}
}

// TestJobPageShowsTail: the page renders the whole lines of the last
// maxPageBytes, numbered by their place in the whole log.
func TestJobPageShowsTail(t *testing.T) {
	var log bytes.Buffer
	n := 0
	for log.Len() < 3*maxPageBytes {
		n++
		fmt.Fprintf(&log, `{"k":"out","x":"line %d"}`+"\n", n)
	}
	v, err := tailLog(context.Background(), memLog(log.Bytes()), int64(log.Len()))
	if err != nil {
		t.Fatal(err)
	}
	last := v.Lines[len(v.Lines)-1]
	if last.N != n || !strings.Contains(string(last.HTML), fmt.Sprintf("line %d", n)) || v.Next != n+1 || v.Size != int64(log.Len()) {
		t.Fatalf("last line %d %q, next %d, size %d; want line %d of %d bytes", last.N, last.HTML, v.Next, v.Size, n, log.Len())
	}
	first := v.Lines[0]
	if v.Skipped != first.N-1 || v.Skipped == 0 || string(first.HTML) != fmt.Sprintf("line %d", first.N) {
		t.Fatalf("first line shown %d %q, skipped %d", first.N, first.HTML, v.Skipped)
	}
	if len(v.Lines) > maxPageLines {
		t.Fatalf("%d lines shown", len(v.Lines))
	}
}
