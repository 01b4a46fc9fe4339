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

// TestParseRangeRejectsSpecialAddresses: an entry that includes an address
// no node may answer ARP/NDP for is rejected, with the special block named.
func TestParseRangeRejectsSpecialAddresses(t *testing.T) {
	tests := []struct{ in, err string }{
		{"0.0.0.0", "0.0.0.0/8 (unspecified"},
		{"0.0.0.0/0", "whole IPv4 address space"},
		{"::/0", "whole IPv6 address space"},
		{"::", "::/128 (unspecified"},
		{"127.0.0.1", "127.0.0.0/8 (loopback"},
		{"126.0.0.0/7", "127.0.0.0/8 (loopback"},
		{"126.255.255.250-127.0.0.2", "127.0.0.0/8 (loopback"},
		{"::1", "::1/128 (loopback"},
		{"169.254.169.254", "169.254.0.0/16 (link-local"},
		{"169.254.0.0/16", "169.254.0.0/16 (link-local"},
		{"fe80::1", "fe80::/10 (link-local"},
		{"fe80::/64", "fe80::/10 (link-local"},
		{"224.0.0.1", "224.0.0.0/4 (multicast"},
		{"192.0.2.0-239.0.0.0", "224.0.0.0/4 (multicast"},
		{"ff02::1", "ff00::/8 (multicast"},
		{"255.255.255.255", "255.255.255.255/32 (broadcast"},
		{"255.255.255.0/24", "255.255.255.255/32 (broadcast"},
		{"128.0.0.0/1", "224.0.0.0/4 (multicast"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, %v; want error containing %q", r, err, tc.err)
			}
		})
	}
	// Neighbours of the special blocks stay usable.
	for _, ok := range []string{"1.0.0.0/8", "126.0.0.0/8", "128.0.0.0/3", "169.253.255.255", "169.255.0.0/16", "223.255.255.255", "255.255.255.254", "::2", "fe7f::/16", "fec0::/10", "2001:db8::/32"} {
		if _, err := ParseRange(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
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
	for _, s := range []string{"192.0.2.0/24", "192.0.2.1-192.0.2.9", "2001:db8::/120", "::1-::5", "1.2.3.4", "a-b-c", "/", "-", "::ffff:1.2.3.4/120", "0.0.0.0/0", "::/0", "127.0.0.1", "fe80::/64", "169.254.169.254", "255.255.255.255", "100.0.0.0-200.0.0.0"} {
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
		// No accepted entry holds an address no node may announce: its ends
		// and every special block's ends lie outside it.
		for _, a := range []netip.Addr{r.First, r.Last} {
			if !a.IsGlobalUnicast() {
				t.Fatalf("%q: accepted %v, whose end %s is not a global unicast address", s, r, a)
			}
		}
		for _, sp := range special {
			if r.Overlaps(sp.Range) {
				t.Fatalf("%q: accepted %v, which overlaps %s", s, r, sp.Name)
			}
		}
	})
}
