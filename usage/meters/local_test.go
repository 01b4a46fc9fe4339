package meters_test

import (
	"context"
	"errors"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

var (
	addrA = netip.MustParseAddr("203.0.113.10")
	addrB = netip.MustParseAddr("2001:db8::10")
	h5    = time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
)

type reading struct {
	node, epoch string
	at          time.Duration // after h5
	bytes       map[netip.Addr]uint64
}

func TestLocalBytesDeltas(t *testing.T) {
	for _, tt := range []struct {
		name     string
		readings []reading
		// want: address -> hour offset (hours after h5) -> bytes
		want map[netip.Addr]map[int]uint64
	}{{
		name:     "a first snapshot is a baseline: its bytes happened before anyone looked",
		readings: []reading{{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}}},
		want:     map[netip.Addr]map[int]uint64{},
	}, {
		name: "growth within an epoch is the delta, credited to the hour of the newer snapshot",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e1", 11 * time.Minute, map[netip.Addr]uint64{addrA: 1500}},
			{"a", "e1", 61 * time.Minute, map[netip.Addr]uint64{addrA: 1700}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 500, 1: 200}},
	}, {
		name: "the same or an older snapshot read again counts nothing",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e1", 11 * time.Minute, map[netip.Addr]uint64{addrA: 1500}},
			{"a", "e1", 11 * time.Minute, map[netip.Addr]uint64{addrA: 1500}},
			{"a", "e1", 9 * time.Minute, map[netip.Addr]uint64{addrA: 900}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 500}},
	}, {
		name: "a new epoch is a reset: its counters are all new bytes, never negative",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e2", 12 * time.Minute, map[netip.Addr]uint64{addrA: 300}},
			{"a", "e2", 13 * time.Minute, map[netip.Addr]uint64{addrA: 350}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 350}},
	}, {
		name: "a new epoch whose counter already passed the old value is still a reset",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e2", 40 * time.Minute, map[netip.Addr]uint64{addrA: 1500}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 1500}},
	}, {
		name: "a counter lower than before in the same epoch was re-created: its value is new",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e1", 12 * time.Minute, map[netip.Addr]uint64{addrA: 40}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 40}},
	}, {
		name: "an address new on a node in the same epoch counts from zero",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"a", "e1", 12 * time.Minute, map[netip.Addr]uint64{addrA: 1000, addrB: 64}},
		},
		want: map[netip.Addr]map[int]uint64{addrB: {0: 64}},
	}, {
		name: "failover: each node's deltas are summed, the same address on two nodes is not counted twice",
		readings: []reading{
			{"a", "e1", 10 * time.Minute, map[netip.Addr]uint64{addrA: 1000}},
			{"b", "x9", 10 * time.Minute, map[netip.Addr]uint64{addrA: 5000}},
			{"a", "e1", 20 * time.Minute, map[netip.Addr]uint64{addrA: 1100}},
			{"b", "x9", 20 * time.Minute, map[netip.Addr]uint64{addrA: 5000}},
			// a dies; b announces and forwards.
			{"b", "x9", 30 * time.Minute, map[netip.Addr]uint64{addrA: 5070}},
			{"b", "x9", 40 * time.Minute, map[netip.Addr]uint64{addrA: 5080}},
		},
		want: map[netip.Addr]map[int]uint64{addrA: {0: 100 + 70 + 10}},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			m := &meters.LocalBytes{}
			for _, r := range tt.readings {
				m.Ingest(r.node, &usage.ByteSnapshot{Epoch: r.epoch, Time: h5.Add(r.at), Bytes: r.bytes})
			}
			for _, a := range []netip.Addr{addrA, addrB} {
				for h := -1; h <= 2; h++ {
					hour := h5.Add(time.Duration(h) * time.Hour)
					if got, want := m.BytesIn(a, hour), tt.want[a][h]; got != want {
						t.Errorf("bytes of %s in the hour of %s = %d, want %d", a, hour.Format(time.Kitchen), got, want)
					}
				}
			}
		})
	}
}

func TestLocalBytesMeasure(t *testing.T) {
	snaps := map[string]string{}
	var listErr error
	m := &meters.LocalBytes{Snapshots: func(context.Context) (map[string]string, error) { return snaps, listErr }}
	put := func(node string, at time.Duration, a, b uint64) {
		s := &usage.ByteSnapshot{Epoch: "e1", Time: h5.Add(at), Bytes: map[netip.Addr]uint64{addrA: a, addrB: b}}
		v, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		snaps[node] = v
		if err := m.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 10*time.Minute, 0, 0)
	put("a", 20*time.Minute, 2_000_000_000, 500_000_000)
	put("a", 70*time.Minute, 2_500_000_000, 500_000_000)

	dual := addrA.String() + "," + addrB.String()
	hours, bad, err := m.Measure(context.Background(), "", []string{dual, addrA.String(), "not-an-address"}, h5, h5.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad["not-an-address"] == nil {
		t.Errorf("bad ids = %v, want only not-an-address", bad)
	}
	check := func(id string, hour time.Time, want *big.Rat) {
		t.Helper()
		got := hours[id]["dataProcessed"][hour]
		if (got == nil) != (want == nil) || (got != nil && got.Cmp(want) != 0) {
			t.Errorf("%s in the hour of %s = %v GB, want %v", id, hour.Format(time.Kitchen), got, want)
		}
	}
	check(dual, h5, big.NewRat(25, 10))
	check(dual, h5.Add(time.Hour), big.NewRat(5, 10))
	check(addrA.String(), h5, big.NewRat(2, 1))
	// The meter has counted since 05:10: its first whole hour is 06:00.
	if got := m.MeasuringSince(); !got.Equal(h5.Add(time.Hour)) {
		t.Errorf("MeasuringSince = %s, want %s", got, h5.Add(time.Hour))
	}

	// A snapshot that does not parse fails every reading: which addresses
	// it had is unknown, and missing bytes must not read as no traffic.
	snaps["b"] = `{"epoch":""}`
	if _, bad, err := m.Measure(context.Background(), "", []string{dual}, h5, h5.Add(2*time.Hour)); err == nil && bad[dual] == nil {
		t.Error("a malformed snapshot was ignored")
	} else if err == nil && usage.ReasonOf(bad[dual]) != usage.ReasonInvalid {
		t.Errorf("malformed snapshot: reason %s, want %s", usage.ReasonOf(bad[dual]), usage.ReasonInvalid)
	}
	delete(snaps, "b")
	listErr = errors.New("cache not synced")
	if _, _, err := m.Measure(context.Background(), "", []string{dual}, h5, h5.Add(2*time.Hour)); err == nil {
		t.Error("Measure succeeded while the snapshots could not be listed")
	}
}
