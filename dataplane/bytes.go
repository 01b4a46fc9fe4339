package dataplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// Per-address byte counters. Every LoadBalancer address the table programs
// has two named counters, bytes-in-<hex address> (packets to the address,
// counted in prerouting before DNAT) and bytes-out-<hex address> (packets
// from it, counted in postrouting after the reply's source is translated
// back to it). Packets sent to the address by processes on the node itself
// (output) are not counted. The counters live in the kernel table, so a
// forwarder restart keeps them; the counter bytes-epoch carries, in its
// comment, an id made when the table's counters were first created: a
// re-created table (Cleanup, a node reboot, someone's nft flush) has a new
// epoch and counters that restarted from zero.
const (
	chainBytesIn  = "bytes-in"
	chainBytesOut = "bytes-out"
	counterEpoch  = "bytes-epoch"
	counterPrefix = "bytes-"

	prioBytesIn  = knftables.DNATPriority + "-20"
	prioBytesOut = knftables.SNATPriority + "+10"
)

// Bytes are the per-address byte counters of the table.
type Bytes struct {
	// Epoch changes when the counters restarted from zero.
	Epoch string
	// In and Out are the bytes to and from each address since the epoch.
	In, Out map[netip.Addr]uint64
}

// Has reports whether addr has counters.
func (b Bytes) Has(addr netip.Addr) bool {
	_, in := b.In[addr]
	_, out := b.Out[addr]
	return in || out
}

func counterName(dir string, addr netip.Addr) string {
	return counterPrefix + dir + "-" + hex.EncodeToString(addr.AsSlice())
}

// parseCounterName is the inverse of counterName.
func parseCounterName(name string) (dir string, addr netip.Addr, ok bool) {
	rest, found := strings.CutPrefix(name, counterPrefix)
	if !found {
		return "", netip.Addr{}, false
	}
	dir, h, found := strings.Cut(rest, "-")
	if !found || (dir != "in" && dir != "out") {
		return "", netip.Addr{}, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return "", netip.Addr{}, false
	}
	addr, ok = netip.AddrFromSlice(raw)
	if !ok || counterName(dir, addr) != name {
		// Not one of ours (upper-case hex): leave it alone.
		return "", netip.Addr{}, false
	}
	return dir, addr, true
}

// countedAddrs are the addresses of svcs, sorted.
func countedAddrs(svcs map[ServiceKey]Service) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, s := range svcs {
		for _, a := range s.LoadBalancerIPs {
			a = a.Unmap()
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// writeCounters refills the counting chains for addrs: counters that exist
// are added again (a no-op that keeps their values), counters of addresses
// in existing but not in addrs are deleted, and the epoch counter is made
// when the table has none.
func writeCounters(tx *knftables.Transaction, addrs []netip.Addr, existing []*knftables.Counter) {
	tx.Add(&knftables.Chain{Name: chainBytesIn, Type: ptr(knftables.FilterType), Hook: ptr(knftables.PreroutingHook), Priority: ptr(knftables.BaseChainPriority(prioBytesIn))})
	tx.Add(&knftables.Chain{Name: chainBytesOut, Type: ptr(knftables.FilterType), Hook: ptr(knftables.PostroutingHook), Priority: ptr(knftables.BaseChainPriority(prioBytesOut))})
	tx.Flush(&knftables.Chain{Name: chainBytesIn})
	tx.Flush(&knftables.Chain{Name: chainBytesOut})
	hasEpoch := false
	want := map[string]bool{}
	for _, a := range addrs {
		ip := "ip"
		if a.Is6() {
			ip = "ip6"
		}
		for _, dir := range []struct{ name, chain, field string }{{"in", chainBytesIn, "daddr"}, {"out", chainBytesOut, "saddr"}} {
			name := counterName(dir.name, a)
			want[name] = true
			tx.Add(&knftables.Counter{Name: name, Comment: ptr(a.String() + " " + dir.name)})
			tx.Add(&knftables.Rule{Chain: dir.chain, Rule: fmt.Sprintf("%s %s %s counter name %q", ip, dir.field, a, name)})
		}
	}
	for _, c := range existing {
		if c == nil { // knftables.Fake lists nil counters first
			continue
		}
		if c.Name == counterEpoch {
			hasEpoch = true
			continue
		}
		if _, _, ok := parseCounterName(c.Name); ok && !want[c.Name] {
			tx.Delete(&knftables.Counter{Name: c.Name})
		}
	}
	if !hasEpoch {
		tx.Add(&knftables.Counter{Name: counterEpoch, Comment: ptr(newEpoch())})
	}
}

// newEpoch makes the id of a new set of counters: random, with the time.
var newEpoch = func() string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:]) + "@" + time.Now().UTC().Format(time.RFC3339)
}

// listCounters lists the table's counters; a missing table has none.
func (d *Dataplane) listCounters(ctx context.Context) ([]*knftables.Counter, error) {
	cs, err := d.nft.ListCounters(ctx)
	if err != nil && !knftables.IsNotFound(err) {
		return nil, fmt.Errorf("listing nftables counters: %w", err)
	}
	return cs, nil
}

// syncCounters rewrites the counting chains for the programmed Services'
// addresses, in a transaction of its own (after Update and Delete).
func (d *Dataplane) syncCounters(ctx context.Context) error {
	addrs := countedAddrs(d.svcs)
	if slices.Equal(addrs, d.counted) {
		return nil
	}
	existing, err := d.listCounters(ctx)
	if err != nil {
		return err
	}
	tx := d.nft.NewTransaction()
	writeCounters(tx, addrs, existing)
	if err := d.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("programming byte counters: %w", err)
	}
	d.counted = addrs
	return nil
}

// Bytes reads the per-address byte counters. A table without an epoch
// counter (not synced, or re-created by someone else) is an error: its
// counters cannot be told from ones that restarted.
func (d *Dataplane) Bytes(ctx context.Context) (Bytes, error) {
	cs, err := d.nft.ListCounters(ctx)
	if err != nil {
		return Bytes{}, fmt.Errorf("listing nftables counters: %w", err)
	}
	b := Bytes{In: map[netip.Addr]uint64{}, Out: map[netip.Addr]uint64{}}
	for _, c := range cs {
		if c == nil {
			continue
		}
		if c.Name == counterEpoch {
			if c.Comment != nil {
				b.Epoch = *c.Comment
			}
			continue
		}
		dir, addr, ok := parseCounterName(c.Name)
		if !ok || c.Bytes == nil {
			continue
		}
		if dir == "in" {
			b.In[addr] = *c.Bytes
		} else {
			b.Out[addr] = *c.Bytes
		}
	}
	if b.Epoch == "" {
		return Bytes{}, fmt.Errorf("nftables table has no %s counter: not synced yet", counterEpoch)
	}
	return b, nil
}
