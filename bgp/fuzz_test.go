package bgp

import (
	"fmt"
	"testing"
)

// FuzzParseCommunity: a community either fails to parse or prints back as
// the same two numbers; the large form likewise with three.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "0:0", "65535:65535", "65536:1", "1:2:3", "4294967295:0:1", ":", "-1:2", "+1:2", "01:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseCommunity(s); err == nil {
			var a, b uint32
			if _, err := fmt.Sscanf(s, "%d:%d", &a, &b); err != nil || a > 65535 || b > 65535 || v != a<<16|b {
				t.Fatalf("%q parsed as %#x", s, v)
			}
		}
		if v, err := ParseLargeCommunity(s); err == nil {
			var a, b, c uint64
			if _, err := fmt.Sscanf(s, "%d:%d:%d", &a, &b, &c); err != nil || uint64(v[0]) != a || uint64(v[1]) != b || uint64(v[2]) != c {
				t.Fatalf("%q parsed as %v", s, v)
			}
		}
	})
}
