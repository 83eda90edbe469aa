package cron

import (
	"testing"
	"time"

	robfig "github.com/robfig/cron/v3"
)

func TestDue(t *testing.T) {
	s, err := robfig.ParseStandard("*/15 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	got := Due(s, base, base.Add(time.Hour))
	want := []time.Time{base.Add(15 * time.Minute), base.Add(30 * time.Minute), base.Add(45 * time.Minute), base.Add(time.Hour)}
	if len(got) != len(want) {
		t.Fatalf("Due = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("Due[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	// after is exclusive: a tick already handled is not due again.
	if got := Due(s, base.Add(time.Hour), base.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("Due of an empty span = %v", got)
	}
	every, _ := robfig.ParseStandard("* * * * *")
	if got := Due(every, base, base.Add(30*24*time.Hour)); len(got) != MaxDue || !got[len(got)-1].Equal(base.Add(30*24*time.Hour)) {
		t.Fatalf("long window: %d ticks ending %v; want the newest %d", len(got), got[len(got)-1], MaxDue)
	}
}

func TestFake(t *testing.T) {
	base := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	f := NewFake(base)
	ch := f.After(time.Minute)
	f.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	if f.Waiters() != 1 {
		t.Fatalf("waiters = %d", f.Waiters())
	}
	f.Advance(time.Second)
	if got := <-ch; !got.Equal(base.Add(time.Minute)) {
		t.Fatalf("fired at %v", got)
	}
	if f.Waiters() != 0 {
		t.Fatalf("waiters = %d after firing", f.Waiters())
	}
}
