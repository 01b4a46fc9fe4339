package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAnalyse: the gap runs from the cut to the last lost probe (plus the
// 10 ms probe interval); probes lost although sent after the probed route
// left the dead node are counted apart, since the router's convergence
// cannot explain them; route changes before the cut, and changes that keep
// the node, do not count.
func TestAnalyse(t *testing.T) {
	cut := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return cut.Add(time.Duration(ms) * time.Millisecond) }
	probed, other := netip.MustParseAddr("10.64.3.1"), netip.MustParseAddr("10.64.0.1")
	events := []routeEvent{
		{at: at(-100), dst: probed},               // before the cut
		{at: at(350), dst: other, withNode: true}, // still via the node
		{at: at(400), dst: other},                 // first without it
		{at: at(450), dst: probed},                // the probed route
		{at: at(460), dst: probed},                // a later change of it
		{at: at(500), dst: netip.MustParseAddr("10.64.9.9")},
	}
	probes := []probe{
		{sent: at(-20)},           // lost before the cut: not counted
		{sent: at(0), ok: true},   //
		{sent: at(100)},           // lost in the convergence
		{sent: at(130), ok: true}, //
		{sent: at(440)},           // the last lost before the route changed
		{sent: at(455), ok: true}, //
		{sent: at(470), ok: true}, //
	}
	r := analyse(cut, probed, events, probes)
	want := failoverRun{gap: 450 * time.Millisecond, maxSpacing: 310 * time.Millisecond, first: 400 * time.Millisecond,
		probed: 450 * time.Millisecond, last: 500 * time.Millisecond, probedRank: 2, changed: 3, lost: 2}
	if r != want {
		t.Errorf("analyse\n got %+v\nwant %+v", r, want)
	}
	// A probe lost after the route changed is not the router's doing.
	probes = append(probes, probe{sent: at(900)})
	r = analyse(cut, probed, events, probes)
	if r.lostAfterRoute != 1 || r.gap != 910*time.Millisecond {
		t.Errorf("a probe lost at 900 ms: lostAfterRoute %d gap %s, want 1 and 910ms", r.lostAfterRoute, r.gap)
	}
}

// TestFRREvent: events are found by their words in FRR's log lines stamped
// with milliseconds, the first at or after the time asked.
func TestFRREvent(t *testing.T) {
	log := `2026/11/30 07:10:18.199 BFD: [J1C6V-VMRW5] state-change: [mhop:no peer:10.88.0.1 local:10.88.0.254 vrf:default ifname:eth0] init -> up
2026/11/30 07:10:20.128 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:10.88.0.1 local:10.88.0.254 vrf:default ifname:eth0] up -> down reason:control-expired
2026/11/30 07:10:20.173 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:10.88.0.12 local:10.88.0.254 vrf:default ifname:eth0] up -> down reason:control-expired
2026/11/30 07:10:21.500123 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:10.88.0.1 local:10.88.0.254 vrf:default ifname:eth0] up -> down reason:control-expired
`
	f := filepath.Join(t.TempDir(), "bfdd.log")
	if err := os.WriteFile(f, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 11, 30, 7, 10, 19, 0, time.Local)
	got := frrEvent(f, since, "state-change", "peer:10.88.0.1 ", "-> down")
	if want := time.Date(2026, 11, 30, 7, 10, 20, 128e6, time.Local); !got.Equal(want) {
		t.Errorf("first down after %s: %s, want %s", since, got, want)
	}
	since = time.Date(2026, 11, 30, 7, 10, 21, 0, time.Local)
	got = frrEvent(f, since, "state-change", "peer:10.88.0.1 ", "-> down")
	if want := time.Date(2026, 11, 30, 7, 10, 21, 500e6, time.Local); !got.Equal(want) {
		t.Errorf("with microseconds: %s, want %s", got, want)
	}
	if got := frrEvent(f, since.Add(time.Hour), "state-change"); !got.IsZero() {
		t.Errorf("nothing after the last line: got %s", got)
	}
}
