package meters

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// LocalBytes meters kind local-address from the forwarders' byte counters:
// each forwarder publishes, in an annotation on its Lease, its cumulative
// bytes per address since its counters' epoch (usage.ByteSnapshot), and
// the meter turns the difference between a node's consecutive snapshots
// into bytes of the hour of the newer one. Each node counts only what it
// forwarded, so the bytes of an address are the sum of every node's
// differences: after a failover the new node's counters add on, nothing is
// counted twice. A new epoch (the table was re-created) or a counter lower
// than before counts the new value in full, never a negative difference.
// The first snapshot of a node is a baseline: its bytes happened before the
// meter looked. The tally lives in the operator's memory: it starts when
// the operator does, and the periods reported start at the first whole
// hour measured (MeasuringSince). The bytes are "dataProcessed" in GB,
// priced at the price list's perGB "data-processed" of the local class
// (set it in the price ConfigMap; without it the usage is UnitNotPriced
// and the cost stays the estimate).
type LocalBytes struct {
	// Snapshots lists each node's annotation value (node -> value).
	Snapshots func(ctx context.Context) (map[string]string, error)
	// PollInterval is how often Start polls (default a minute), so that
	// bytes land in the hour they were counted in.
	PollInterval time.Duration
	// OnError hears about failed polls (to log them).
	OnError func(error)

	mu    sync.Mutex
	nodes map[string]*usage.ByteSnapshot
	hours map[netip.Addr]map[time.Time]uint64
	first time.Time
	// pruned is the hour old tallies were last dropped at.
	pruned time.Time
	// bad names the nodes whose last snapshot did not parse.
	bad map[string]error
}

var _ usage.Meter = (*LocalBytes)(nil)

// keepHours is how long hourly tallies are kept: a month to date and a day.
const keepHours = 32 * 24 * time.Hour

// Kind implements usage.Meter.
func (m *LocalBytes) Kind() string { return "local-address" }

// Source implements usage.Meter.
func (m *LocalBytes) Source() string { return "portico-forwarder:nftables-counters" }

// Quantities implements usage.Meter.
func (m *LocalBytes) Quantities() []providers.UsageQuantity {
	return []providers.UsageQuantity{{Name: "dataProcessed", Unit: providers.UnitGB}}
}

// Ingest folds node's snapshot s into the hourly tallies.
func (m *LocalBytes) Ingest(node string, s *usage.ByteSnapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nodes == nil {
		m.nodes, m.hours = map[string]*usage.ByteSnapshot{}, map[netip.Addr]map[time.Time]uint64{}
	}
	prev := m.nodes[node]
	if prev == nil {
		m.nodes[node] = s
		if m.first.IsZero() || s.Time.Before(m.first) {
			m.first = s.Time
		}
		return
	}
	if !s.Time.After(prev.Time) {
		return
	}
	hour := s.Time.UTC().Truncate(time.Hour)
	for a, cur := range s.Bytes {
		delta := cur
		if old, ok := prev.Bytes[a]; ok && prev.Epoch == s.Epoch && cur >= old {
			delta = cur - old
		}
		if delta == 0 {
			continue
		}
		if m.hours[a] == nil {
			m.hours[a] = map[time.Time]uint64{}
		}
		m.hours[a][hour] += delta
	}
	m.nodes[node] = s
	// Old hours are dropped once an hour, not at every snapshot.
	if !hour.After(m.pruned) {
		return
	}
	m.pruned = hour
	for a, hs := range m.hours {
		for h := range hs {
			if s.Time.Sub(h) > keepHours {
				delete(hs, h)
			}
		}
		if len(hs) == 0 {
			delete(m.hours, a)
		}
	}
}

// BytesIn returns the bytes of addr tallied for the hour starting at hour.
func (m *LocalBytes) BytesIn(addr netip.Addr, hour time.Time) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hours[addr][hour.UTC()]
}

// MeasuringSince is the first whole hour the meter measured (zero before
// the first snapshot): the Tracker starts every period there.
func (m *LocalBytes) MeasuringSince() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first.IsZero() {
		return time.Time{}
	}
	h := m.first.UTC().Truncate(time.Hour)
	if !h.Equal(m.first) {
		h = h.Add(time.Hour)
	}
	return h
}

// Poll reads every node's snapshot and ingests the good ones; a snapshot
// that does not parse is remembered until that node's next good one.
func (m *LocalBytes) Poll(ctx context.Context) error {
	if m.Snapshots == nil {
		return errors.New("local byte meter: no snapshot source")
	}
	snaps, err := m.Snapshots(ctx)
	if err != nil {
		return fmt.Errorf("listing forwarder byte snapshots: %w", err)
	}
	nodes := make([]string, 0, len(snaps))
	for n := range snaps {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	bad := map[string]error{}
	for _, n := range nodes {
		s, err := usage.ParseByteSnapshot(snaps[n])
		if err != nil {
			bad[n] = err
			continue
		}
		m.Ingest(n, s)
	}
	m.mu.Lock()
	m.bad = bad
	m.mu.Unlock()
	return nil
}

// Start polls every PollInterval until ctx ends (a manager.Runnable).
func (m *LocalBytes) Start(ctx context.Context) error {
	interval := m.PollInterval
	if interval <= 0 {
		interval = time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := m.Poll(ctx); err != nil && m.OnError != nil {
			m.OnError(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ParseLocalMeterID splits a local meter id: the Service's addresses,
// comma-separated.
func ParseLocalMeterID(id string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range strings.Split(id, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not a comma-separated list of addresses", id)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// Measure implements usage.Meter: it polls, then sums each id's addresses
// per hour in [start, end). The region is not used.
func (m *LocalBytes) Measure(ctx context.Context, _ string, ids []string, start, end time.Time) (map[string]usage.Hours, map[string]error, error) {
	if err := m.Poll(ctx); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var badNodes []string
	for n, err := range m.bad {
		badNodes = append(badNodes, n+": "+err.Error())
	}
	sort.Strings(badNodes)
	out, bad := map[string]usage.Hours{}, map[string]error{}
	gb := big.NewInt(1_000_000_000)
	for _, id := range ids {
		addrs, err := ParseLocalMeterID(id)
		if err != nil {
			bad[id] = usage.Invalidf("%s: %v", m.Source(), err)
			continue
		}
		if len(badNodes) > 0 {
			bad[id] = usage.Invalidf("%s: unreadable byte snapshots (%s)", m.Source(), strings.Join(badNodes, "; "))
			continue
		}
		sums := map[time.Time]uint64{}
		for _, a := range addrs {
			for h, b := range m.hours[a] {
				if !h.Before(start) && h.Before(end) {
					sums[h] += b
				}
			}
		}
		if len(sums) == 0 {
			continue
		}
		vals := map[time.Time]*big.Rat{}
		for h, b := range sums {
			vals[h] = new(big.Rat).SetFrac(new(big.Int).SetUint64(b), gb)
		}
		out[id] = usage.Hours{"dataProcessed": vals}
	}
	return out, bad, nil
}
