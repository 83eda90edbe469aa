// Package wire is the protocol between the agent (package sandbox) and the
// launcher, the static PID 1 of every job container (cmd
// agent/sandbox/launcher). It has no dependencies beyond the standard
// library, so the launcher stays small and starts fast.
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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
}

// Marshal encodes p.
func (p *Proc) Marshal() []byte {
	var b []byte
	str := func(s string) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	strs := func(ss []string) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	str(p.Path)
	strs(p.Args)
	strs(p.Env)
	str(p.Dir)
	b = binary.LittleEndian.AppendUint32(b, p.UID)
	b = binary.LittleEndian.AppendUint32(b, p.GID)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Groups)))
	for _, g := range p.Groups {
		b = binary.LittleEndian.AppendUint32(b, g)
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
		v := binary.LittleEndian.Uint32(b)
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
		return fmt.Errorf("decode step: path: %w", err)
	}
	if p.Args, err = strs(); err != nil {
		return fmt.Errorf("decode step: args: %w", err)
	}
	if p.Env, err = strs(); err != nil {
		return fmt.Errorf("decode step: env: %w", err)
	}
	if p.Dir, err = str(); err != nil {
		return fmt.Errorf("decode step: dir: %w", err)
	}
	if p.UID, err = u32(); err != nil {
		return fmt.Errorf("decode step: uid: %w", err)
	}
	if p.GID, err = u32(); err != nil {
		return fmt.Errorf("decode step: gid: %w", err)
	}
	n, err := u32()
	if err != nil || uint64(n)*4 != uint64(len(b)) {
		return fmt.Errorf("decode step: groups: %w", errShort)
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
		return fmt.Errorf("frame of %d bytes: more than %d", len(payload), MaxFrame)
	}
	b := make([]byte, 5, 5+len(payload))
	b[0] = tag
	binary.LittleEndian.PutUint32(b[1:], uint32(len(payload)))
	_, err := w.Write(append(b, payload...))
	return err
}

// ReadFrame reads one frame from a stream.
func ReadFrame(r io.Reader) (tag byte, payload []byte, err error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(h[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes: more than %d", n, MaxFrame)
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
	return append(binary.LittleEndian.AppendUint32(nil, f.Flags), f.Program...)
}

// Unmarshal decodes what Marshal encoded.
func (f *Filter) Unmarshal(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("decode filter: %w", errShort)
	}
	f.Flags, f.Program = binary.LittleEndian.Uint32(b), b[4:]
	return nil
}

// Status encodes a wait status for an Exited frame.
func Status(ws uint32) []byte { return binary.LittleEndian.AppendUint32(nil, ws) }

// ParseStatus decodes an Exited frame's payload.
func ParseStatus(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("exit status of %d bytes, want 4", len(b))
	}
	return binary.LittleEndian.Uint32(b), nil
}
