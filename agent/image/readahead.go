package image

import (
	"context"
	"errors"
	"io"
)

// readAhead reads src on its own goroutine, a chunk ahead of its reader, so
// that decompressing and hashing a layer run on another core while the
// unpack's file system calls run on this one.
type readAhead struct {
	chunks chan []byte
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}
	cur    []byte
	buf    []byte // cur's backing array, returned to free when used up
	err    error  // src's error (io.EOF at its end), valid once chunks is closed
}

const (
	readAheadChunk = 256 << 10
	readAheadDepth = 8
)

// newReadAhead starts reading src; Close stops it and waits for it.
func newReadAhead(src io.Reader) *readAhead {
	ra := &readAhead{
		chunks: make(chan []byte, readAheadDepth),
		free:   make(chan []byte, readAheadDepth+1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range readAheadDepth + 1 {
		ra.free <- make([]byte, readAheadChunk)
	}
	go ra.fill(src)
	return ra
}

func (ra *readAhead) fill(src io.Reader) {
	defer close(ra.done)
	defer close(ra.chunks)
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			ra.err = context.Canceled
			return
		}
		n, err := io.ReadFull(src, b)
		if n > 0 {
			select {
			case ra.chunks <- b[:n]:
			case <-ra.stop:
				ra.err = context.Canceled
				return
			}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		if err != nil {
			ra.err = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.chunks
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the reading goroutine and waits until it has returned, so
// that src may be closed after it.
func (ra *readAhead) Close() error {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	<-ra.done
	return nil
}
