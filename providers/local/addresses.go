package local

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Range is an inclusive span of addresses of one family.
type Range struct {
	First netip.Addr
	Last  netip.Addr
}

// String renders the range the way ParseRange reads it back.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// Contains reports whether a lies in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.IsValid() && a.BitLen() == r.First.BitLen() && a.Compare(r.First) >= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Is4 reports whether r holds IPv4 addresses.
func (r Range) Is4() bool { return r.First.Is4() }

// SpecialBlock is a block of addresses that no node may answer ARP/NDP for.
type SpecialBlock struct {
	Range Range
	// Name is the block's CIDR and what it is, for messages.
	Name string
}

// special lists the blocks an IPPool may not include: a node announcing one
// of them would answer for the unspecified address, its own loopback, a
// link-local neighbour (169.254.169.254 is the cloud metadata service), a
// multicast group or the IPv4 broadcast address.
var special = func() []SpecialBlock {
	var out []SpecialBlock
	for _, b := range []struct{ cidr, what string }{
		{"0.0.0.0/8", "unspecified, \"this network\""},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "broadcast"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	} {
		p := netip.MustParsePrefix(b.cidr)
		out = append(out, SpecialBlock{Range: Range{First: p.Addr(), Last: lastOf(p)}, Name: b.cidr + " (" + b.what + ")"})
	}
	return out
}()

// SpecialBlocks returns the blocks no IPPool entry may include.
func SpecialBlocks() []SpecialBlock { return slices.Clone(special) }

// checkSpecial rejects a range that includes a special block or is one
// of the whole-address-space prefixes.
func checkSpecial(s string, r Range) error {
	if r.First == netip.IPv4Unspecified() && r.Last == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("%q covers the whole IPv4 address space; list the addresses the pool may hand out", s)
	}
	if r.First == netip.IPv6Unspecified() && r.Last == lastOf(netip.PrefixFrom(r.First, 0)) {
		return fmt.Errorf("%q covers the whole IPv6 address space; list the addresses the pool may hand out", s)
	}
	var hit []string
	for _, b := range special {
		if r.Overlaps(b.Range) {
			hit = append(hit, b.Name)
		}
	}
	if len(hit) > 0 {
		return fmt.Errorf("%q includes %s, which must never be announced", s, strings.Join(hit, ", "))
	}
	return nil
}

// ParseRange reads one IPPool address entry: a CIDR ("192.0.2.0/28",
// "2001:db8::/120"), an inclusive range ("192.0.2.10-192.0.2.20") or a single
// address. It rejects zones, IPv4-mapped IPv6 addresses, CIDRs with host bits
// set, ranges whose ends differ in family or are reversed, and entries that
// include a special block (SpecialBlocks: unspecified, loopback, link-local,
// multicast, broadcast), whole-address-space prefixes included.
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	r, err := parseRange(s)
	if err != nil {
		return Range{}, err
	}
	if err := checkSpecial(s, r); err != nil {
		return Range{}, err
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	switch {
	case s == "":
		return Range{}, fmt.Errorf("empty address entry")
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, fmt.Errorf("%q is not a valid CIDR: %w", s, err)
		}
		if err := checkAddr(p.Addr()); err != nil {
			return Range{}, fmt.Errorf("%q: %w", s, err)
		}
		if p.Masked() != p {
			return Range{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return Range{First: p.Addr(), Last: lastOf(p)}, nil
	case strings.Contains(s, "-"):
		lo, hi, _ := strings.Cut(s, "-")
		first, err := parseAddr(strings.TrimSpace(lo))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: %w", s, err)
		}
		last, err := parseAddr(strings.TrimSpace(hi))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: %w", s, err)
		}
		if first.BitLen() != last.BitLen() {
			return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if first.Compare(last) > 0 {
			return Range{}, fmt.Errorf("range %q ends before it starts", s)
		}
		return Range{First: first, Last: last}, nil
	default:
		a, err := parseAddr(s)
		if err != nil {
			return Range{}, err
		}
		return Range{First: a, Last: a}, nil
	}
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not a valid IP address: %w", s, err)
	}
	if err := checkAddr(a); err != nil {
		return netip.Addr{}, fmt.Errorf("%q: %w", s, err)
	}
	return a, nil
}

func checkAddr(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("addresses with a zone are not allowed")
	case a.Is4In6():
		return fmt.Errorf("IPv4-mapped IPv6 addresses are not allowed; write the IPv4 address")
	}
	return nil
}

// lastOf returns the last address of a masked prefix.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				b[i] |= 0x80 >> bit
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ParseRanges parses every entry and rejects overlaps within the list. The
// result is sorted.
func ParseRanges(entries []string) ([]Range, error) {
	out := make([]Range, 0, len(entries))
	for _, e := range entries {
		r, err := ParseRange(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	SortRanges(out)
	for i := 1; i < len(out); i++ {
		if out[i-1].Overlaps(out[i]) {
			return nil, fmt.Errorf("entries %s and %s overlap", out[i-1], out[i])
		}
	}
	return out, nil
}

// SortRanges orders ranges IPv4 first, then by first address.
func SortRanges(rs []Range) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].First.Less(rs[j].First) })
}

// Buggy reports whether a is an IPv4 address ending in .0 or .255, which some
// old clients and routers mishandle.
func Buggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// Size counts the usable addresses of r, capped at math.MaxInt64. With
// avoidBuggy, IPv4 addresses ending in .0 and .255 are not counted.
func (r Range) Size(avoidBuggy bool) int64 {
	if r.Is4() {
		lo, hi := v4(r.First), v4(r.Last)
		n := hi - lo + 1
		if avoidBuggy {
			n -= countMod256(lo, hi, 0) + countMod256(lo, hi, 255)
		}
		return n
	}
	a, b := r.First.As16(), r.Last.As16()
	var hiA, loA, hiB, loB uint64
	for i := range 8 {
		hiA, loA = hiA<<8|uint64(a[i]), loA<<8|uint64(a[i+8])
		hiB, loB = hiB<<8|uint64(b[i]), loB<<8|uint64(b[i+8])
	}
	if hiB != hiA {
		return math.MaxInt64
	}
	d := loB - loA
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(d) + 1
}

func v4(a netip.Addr) int64 {
	b := a.As4()
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}

// countMod256 counts x in [lo, hi] with x%256 == k.
func countMod256(lo, hi, k int64) int64 {
	upTo := func(x int64) int64 { // count of y in [0, x] with y%256 == k
		if x < k {
			return 0
		}
		return (x-k)/256 + 1
	}
	return upTo(hi) - upTo(lo-1)
}

// TotalSize sums Size over ranges, saturating at math.MaxInt64.
func TotalSize(rs []Range, avoidBuggy bool) int64 {
	var total int64
	for _, r := range rs {
		n := r.Size(avoidBuggy)
		if total > math.MaxInt64-n {
			return math.MaxInt64
		}
		total += n
	}
	return total
}
