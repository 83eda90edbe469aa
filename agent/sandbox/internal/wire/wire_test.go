package wire

import (
	"bytes"
	"reflect"
	"testing"
)

func TestProcRoundTrip(t *testing.T) {
	for _, p := range []Proc{
		{},
		{Path: "/bin/sh", Args: []string{"/bin/sh", "-c", "echo ü; exit 3", ""}, Env: []string{"A=1", "B="}, Dir: "/workspace", UID: 1000, GID: 1001, Groups: []uint32{5, 1001}},
		{Path: "/bin/true", UID: 0, Nest: true},
	} {
		var got Proc
		if err := got.Unmarshal(p.Marshal()); err != nil {
			t.Fatal(err)
		}
		// Empty lists decode as empty, not nil.
		if len(p.Groups) == 0 {
			p.Groups = []uint32{}
		}
		if len(p.Args) == 0 {
			p.Args, p.Env = []string{}, []string{}
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("got %+v, want %+v", got, p)
		}
	}
}

func TestProcTruncated(t *testing.T) {
	b := (&Proc{Path: "/bin/true", Args: []string{"true"}, Groups: []uint32{1}}).Marshal()
	for n := range len(b) {
		var p Proc
		if err := p.Unmarshal(b[:n]); err == nil {
			t.Errorf("%d of %d bytes decoded", n, len(b))
		}
	}
	var p Proc
	if err := p.Unmarshal(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, Exited, Status(0x0900)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, Started, nil); err != nil {
		t.Fatal(err)
	}
	tag, b, err := ReadFrame(&buf)
	if err != nil || tag != Exited {
		t.Fatalf("%c %v", tag, err)
	}
	if ws, err := ParseStatus(b); err != nil || ws != 0x0900 {
		t.Errorf("status %#x %v", ws, err)
	}
	if tag, b, err := ReadFrame(&buf); err != nil || tag != Started || len(b) != 0 {
		t.Errorf("%c %q %v", tag, b, err)
	}
	if _, _, err := ReadFrame(&buf); err == nil {
		t.Error("read past the end")
	}
}

func TestFilterRoundTrip(t *testing.T) {
	f := Filter{Flags: 4, Program: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	var got Filter
	if err := got.Unmarshal(f.Marshal()); err != nil || got.Flags != 4 || !bytes.Equal(got.Program, f.Program) {
		t.Errorf("got %+v %v", got, err)
	}
	if err := got.Unmarshal([]byte{1, 2}); err == nil {
		t.Error("short filter accepted")
	}
}
