package network

import "testing"

func TestPastaMessage(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"pasta: unrecognized option '--x'\nFailed to send 51 bytes to syslog\nUsage: pasta [OPTION]...\n  -d, --debug\n", "pasta: unrecognized option '--x'"},
		{"Failed to send 20 bytes to syslog\nCouldn't open /dev/net/tun: Permission denied\n", "Couldn't open /dev/net/tun: Permission denied"},
		{"a\nb\nc\nd\n", "a; b; c"},
		{"", ""},
	} {
		if got := pastaMessage(c.in); got != c.want {
			t.Errorf("pastaMessage(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
