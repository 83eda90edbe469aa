// Package wire is the protocol between the agent (package sandbox) and the
// launcher, the static PID 1 of every job container. The launcher is a
// small C program (agent/sandbox/launcher/launcher.c: Go's runtime
// start-up was most of a container's wait for it), which mirrors this
// package's encoding byte for byte; this package is the protocol's
// definition, and the launcher's tests check the C side against it.
//
// The agent holds one end of a SOCK_SEQPACKET socket pair; the launcher
// gets the other as file descriptor 3 (ControlFD). On it:
//
//   - first the agent sends one Setup message: the seccomp filter to load
//     (see Filter), and the launcher answers Ready or Failed with the
//     reason;
//   - then each step is one Run message carrying, with SCM_RIGHTS, a
//     stream socket for the step's conversation and its stdin, stdout and
//     stderr, in that order.
//
// On the step's stream socket the agent writes the Request as one frame;
// the launcher answers Started or Failed (the step could not be started:
// no such command, a bad working directory...), and after Started, when
// the step has ended, Exited with its wait status.
package wire

import (
	"errors"
	"io"
	"strconv"
)

// ControlFD is the launcher's end of the control socket.
const ControlFD = 3

// Message and frame tags.
const (
	Setup   byte = 'F' // agent → launcher, control: the seccomp filter
	Ready   byte = 'R' // launcher → agent, control: filter loaded
	Run     byte = 'X' // agent → launcher, control: a step (with 4 fds)
	Request byte = 'Q' // agent → launcher, step socket: the encoded Proc
	Started byte = 'S' // launcher → agent, step socket: the step runs
	Failed  byte = 'E' // launcher → agent: a reason in words
	Exited  byte = 'W' // launcher → agent, step socket: 4-byte wait status
)

// MaxFrame bounds a frame's payload: execve itself refuses more than a few
// MiB of arguments and environment.
const MaxFrame = 16 << 20

// Proc is a step for the launcher to start.
type Proc struct {
	// Path is the program; without a "/" it is looked up in the PATH of
	// Env.
	Path string
	Args []string
	Env  []string
	Dir  string
	UID  uint32
	GID  uint32
	// Groups are the supplementary groups (set, possibly to none).
	Groups []uint32
	// Nest starts the step as root of a new user namespace nested in the
	// container's, with the identity mapping of the container's ids and a
	// new mount namespace owned by it: a building container's root steps
	// (see package sandbox's builder.go). The launcher writes the maps
	// from the container's namespace; a failure fails the step.
	Nest bool
}

// Marshal encodes p.
func (p *Proc) Marshal() []byte {
	var b []byte
	str := func(s string) {
		b = appendU32(b, uint32(len(s)))
		b = append(b, s...)
	}
	strs := func(ss []string) {
		b = appendU32(b, uint32(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	str(p.Path)
	strs(p.Args)
	strs(p.Env)
	str(p.Dir)
	b = appendU32(b, p.UID)
	b = appendU32(b, p.GID)
	var nest uint32
	if p.Nest {
		nest = 1
	}
	b = appendU32(b, nest)
	b = appendU32(b, uint32(len(p.Groups)))
	for _, g := range p.Groups {
		b = appendU32(b, g)
	}
	return b
}

var errShort = errors.New("truncated")

// Unmarshal decodes what Marshal encoded.
func (p *Proc) Unmarshal(b []byte) error {
	u32 := func() (uint32, error) {
		if len(b) < 4 {
			return 0, errShort
		}
		v := u32At(b)
		b = b[4:]
		return v, nil
	}
	str := func() (string, error) {
		n, err := u32()
		if err != nil {
			return "", err
		}
		if uint64(n) > uint64(len(b)) {
			return "", errShort
		}
		s := string(b[:n])
		b = b[n:]
		return s, nil
	}
	strs := func() ([]string, error) {
		n, err := u32()
		if err != nil {
			return nil, err
		}
		// Each string takes at least its 4-byte length.
		if uint64(n)*4 > uint64(len(b)) {
			return nil, errShort
		}
		ss := make([]string, 0, n)
		for range n {
			s, err := str()
			if err != nil {
				return nil, err
			}
			ss = append(ss, s)
		}
		return ss, nil
	}
	var err error
	if p.Path, err = str(); err != nil {
		return wrap("decode step: path", err)
	}
	if p.Args, err = strs(); err != nil {
		return wrap("decode step: args", err)
	}
	if p.Env, err = strs(); err != nil {
		return wrap("decode step: env", err)
	}
	if p.Dir, err = str(); err != nil {
		return wrap("decode step: dir", err)
	}
	if p.UID, err = u32(); err != nil {
		return wrap("decode step: uid", err)
	}
	if p.GID, err = u32(); err != nil {
		return wrap("decode step: gid", err)
	}
	nest, err := u32()
	if err != nil {
		return wrap("decode step: nest", err)
	}
	p.Nest = nest != 0
	n, err := u32()
	if err != nil || uint64(n)*4 != uint64(len(b)) {
		return wrap("decode step: groups", errShort)
	}
	p.Groups = make([]uint32, n)
	for i := range p.Groups {
		p.Groups[i], _ = u32()
	}
	return nil
}

// WriteFrame writes one frame, a tag and a payload, to a stream.
func WriteFrame(w io.Writer, tag byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return errors.New("frame of " + strconv.Itoa(len(payload)) + " bytes: more than " + strconv.Itoa(MaxFrame))
	}
	b := make([]byte, 5, 5+len(payload))
	b[0] = tag
	putU32(b[1:], uint32(len(payload)))
	_, err := w.Write(append(b, payload...))
	return err
}

// ReadFrame reads one frame from a stream.
func ReadFrame(r io.Reader) (tag byte, payload []byte, err error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := u32At(h[1:])
	if n > MaxFrame {
		return 0, nil, errors.New("frame of " + strconv.FormatUint(uint64(n), 10) + " bytes: more than " + strconv.Itoa(MaxFrame))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], payload, nil
}

// Filter is a seccomp filter for the launcher to load into itself.
type Filter struct {
	// Flags are seccomp(2)'s SECCOMP_FILTER_FLAG_* bits to load it with
	// (the launcher adds TSYNC).
	Flags uint32
	// Program is the classic BPF program, raw struct sock_filter
	// entries; empty means no filter.
	Program []byte
}

// Marshal encodes f as a Setup message's payload.
func (f *Filter) Marshal() []byte {
	return append(appendU32(nil, f.Flags), f.Program...)
}

// Unmarshal decodes what Marshal encoded.
func (f *Filter) Unmarshal(b []byte) error {
	if len(b) < 4 {
		return wrap("decode filter", errShort)
	}
	f.Flags, f.Program = u32At(b), b[4:]
	return nil
}

// Status encodes a wait status for an Exited frame.
func Status(ws uint32) []byte { return appendU32(nil, ws) }

// ParseStatus decodes an Exited frame's payload.
func ParseStatus(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, errors.New("exit status of " + strconv.Itoa(len(b)) + " bytes, want 4")
	}
	return u32At(b), nil
}

// wrap is fmt.Errorf("%s: %w") without fmt.
func wrap(what string, err error) error { return &wrapped{what, err} }

type wrapped struct {
	what string
	err  error
}

func (w *wrapped) Error() string { return w.what + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func putU32(b []byte, v uint32) { _ = appendU32(b[:0], v) }

func u32At(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
