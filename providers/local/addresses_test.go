package local

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		size    int64
		sizeAvd int64
		err     string
	}{
		{in: "192.0.2.0/24", want: "192.0.2.0-192.0.2.255", size: 256, sizeAvd: 254},
		{in: " 192.0.2.10 - 192.0.2.20 ", want: "192.0.2.10-192.0.2.20", size: 11, sizeAvd: 11},
		{in: "192.0.2.7", want: "192.0.2.7", size: 1, sizeAvd: 1},
		{in: "192.0.2.7/32", want: "192.0.2.7", size: 1, sizeAvd: 1},
		{in: "10.0.0.0/8", want: "10.0.0.0-10.255.255.255", size: 1 << 24, sizeAvd: 1<<24 - 2*(1<<16)},
		{in: "2001:db8::/120", want: "2001:db8::-2001:db8::ff", size: 256, sizeAvd: 256},
		{in: "2001:db8::/64", want: "2001:db8::-2001:db8::ffff:ffff:ffff:ffff", size: math.MaxInt64, sizeAvd: math.MaxInt64},
		{in: "2001:db8::1-2001:db8::3", want: "2001:db8::1-2001:db8::3", size: 3, sizeAvd: 3},
		{in: "0.0.0.0/0", want: "0.0.0.0-255.255.255.255", size: 1 << 32, sizeAvd: 1<<32 - 2*(1<<24)},
		{in: "192.0.2.5/24", err: "host bits"},
		{in: "192.0.2.0/33", err: "not a valid CIDR"},
		{in: "192.0.2.20-192.0.2.10", err: "ends before"},
		{in: "192.0.2.1-2001:db8::1", err: "mixes"},
		{in: "fe80::1%eth0", err: "zone"},
		{in: "::ffff:192.0.2.1", err: "IPv4-mapped"},
		{in: "", err: "empty"},
		{in: "banana", err: "not a valid IP"},
		{in: "1.2.3.4-", err: "not a valid IP"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", r, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tc.want {
				t.Errorf("got %s, want %s", r, tc.want)
			}
			if got := r.Size(false); got != tc.size {
				t.Errorf("Size = %d, want %d", got, tc.size)
			}
			if got := r.Size(true); got != tc.sizeAvd {
				t.Errorf("Size(avoidBuggy) = %d, want %d", got, tc.sizeAvd)
			}
		})
	}
}

func TestParseRangesRejectsOverlap(t *testing.T) {
	if _, err := ParseRanges([]string{"192.0.2.0/28", "192.0.2.10-192.0.2.30"}); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("got %v, want an overlap error", err)
	}
	rs, err := ParseRanges([]string{"2001:db8::/126", "192.0.2.16/28", "192.0.2.0/28"})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].String() != "192.0.2.0-192.0.2.15" || !rs[2].First.Is6() {
		t.Fatalf("not sorted: %v", rs)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "192.0.2.1-192.0.2.9", "2001:db8::/120", "::1-::5", "1.2.3.4", "a-b-c", "/", "-", "::ffff:1.2.3.4/120"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() || r.First.BitLen() != r.Last.BitLen() {
			t.Fatalf("%q parsed to invalid range %v", s, r)
		}
		if r.First.Compare(r.Last) > 0 || !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%q: range %v does not contain its ends", s, r)
		}
		if n := r.Size(false); n < 1 || r.Size(true) < 0 || r.Size(true) > n {
			t.Fatalf("%q: sizes %d/%d", s, n, r.Size(true))
		}
		back, err := ParseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %v -> %q -> %v, %v: not a round trip", s, r, r.String(), back, err)
		}
		if r.Contains(netip.Addr{}) {
			t.Fatal("contains the zero address")
		}
	})
}
