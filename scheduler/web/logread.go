package web

import (
	"bytes"
	"context"
)

// Bounds of reading a log: a store read fetches at most LogPage bytes,
// and a line longer than MaxLogLine is not held but reported by its size
// (a log is the agent's JSON lines; the agent cuts output lines at 64 KiB,
// so only a broken or hostile agent sends such a line). A reader so holds
// at most LogPage+MaxLogLine bytes, however large the log.
const (
	LogPage    = 256 << 10
	MaxLogLine = 1 << 20
)

// ReadLogFunc reads at most max bytes of a log from byte offset from;
// nothing at the log's current end.
type ReadLogFunc func(ctx context.Context, from, max int64) ([]byte, error)

// Line is one line of a log.
type Line struct {
	// Data is the line without its newline, valid until the next call to
	// Next; nil when TooLong.
	Data []byte
	// Off is the line's byte offset in the log, Size its length with the
	// newline.
	Off, Size int64
	// TooLong is set for a line over MaxLogLine, which is skipped.
	TooLong bool
}

// LineReader reads a log line by line from an offset, in pages.
type LineReader struct {
	read ReadLogFunc
	off  int64  // offset of buf[0]: where the next line starts
	buf  []byte // read but not yet returned
	mem  []byte // buf's backing array
	long int64  // bytes of an over-long line dropped so far
}

// NewLineReader reads the log read returns from byte offset from, which
// should be the start of a line.
func NewLineReader(read ReadLogFunc, from int64) *LineReader {
	return &LineReader{read: read, off: from}
}

// Offset is where the next line starts: past the last line returned.
func (r *LineReader) Offset() int64 { return r.off }

// Next returns the next whole line; ok is false at the log's current end,
// and a later call goes on from there once the log has grown.
func (r *LineReader) Next(ctx context.Context) (l Line, ok bool, err error) {
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			if r.long > 0 {
				l = Line{Off: r.off, Size: r.long + int64(i) + 1, TooLong: true}
				r.long = 0
			} else {
				l = Line{Data: r.buf[:i], Off: r.off, Size: int64(i) + 1}
			}
			r.buf = r.buf[i+1:]
			r.off += l.Size
			return l, true, nil
		}
		if len(r.buf) >= MaxLogLine || r.long > 0 {
			// An over-long line: count it, keep none of it.
			r.long += int64(len(r.buf))
			r.buf = r.buf[:0]
		}
		n := copy(r.mem, r.buf) // what is left to the front
		r.buf = r.mem[:n]
		end := r.off + r.long + int64(len(r.buf))
		data, err := r.read(ctx, end, LogPage)
		if err != nil || len(data) == 0 {
			return Line{}, false, err
		}
		if need := len(r.buf) + len(data); need > cap(r.mem) {
			// Grown to what is needed, no more: at most a line and a page.
			m := make([]byte, len(r.buf), need)
			copy(m, r.buf)
			r.buf, r.mem = m, m[:need]
		}
		r.buf = append(r.buf, data...)
	}
}

// Rest returns what follows the last whole line, once the log is
// complete: a last line without a newline. It is empty when that line is
// over MaxLogLine.
func (r *LineReader) Rest() []byte {
	if r.long > 0 {
		return nil
	}
	return r.buf
}

// LineStart finds the start of the line that holds byte offset at: it
// returns that line's offset and how many lines come before it, reading
// the log up to at in pages.
func LineStart(ctx context.Context, read ReadLogFunc, at int64) (start int64, lines int, err error) {
	for off := int64(0); off < at; {
		data, err := read(ctx, off, min(LogPage, at-off))
		if err != nil || len(data) == 0 {
			return start, lines, err
		}
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			lines += bytes.Count(data, []byte{'\n'})
			start = off + int64(i) + 1
		}
		off += int64(len(data))
	}
	return start, lines, nil
}
