package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Lines as FRR 8.4's bgpd and the forwarder write them.
const (
	bgpdLog = `2026/11/30 07:20:28.464345 BGP: [T5AAP-5GA85] 10.88.0.1(vm) rcvd UPDATE w/ attr: nexthop 10.88.0.1, origin i, path 64513
2026/11/30 07:20:28.464365 BGP: [YCKEM-GB33T] 10.88.0.1(vm) rcvd 10.64.0.0/32 IPv4 unicast
2026/11/30 07:20:28.470001 BGP: [YCKEM-GB33T] fd88::2 rcvd fd64::5/128 IPv6 unicast
2026/11/30 07:20:28.514000 BGP: [V15FP-4CPVK] Tx route add VRF 0 10.64.0.0/32 metric 0 tag 0 count 3 nhg 0
2026/11/30 07:20:28.5 BGP: [V15FP-4CPVK] Tx route add VRF 0 garbage metric 0
`
	forwarderLog = `{"level":"info","msg":"Heartbeat"}
{"level":"Level(-4)","ts":"2026-11-30T07:20:28Z","logger":"bgp","msg":"Routes handed to GoBGP","plannedUnixMicro":1796023228414000,"patchedUnixMicro":1796023228414550,"routes":["10.64.0.0/32@1796023228405720","bad@1","10.64.0.9/32@x"]}
`
)

func TestParseTraces(t *testing.T) {
	rt, err := parseRouterTrace(strings.NewReader(bgpdLog))
	if err != nil {
		t.Fatal(err)
	}
	p4, p6 := netip.MustParsePrefix("10.64.0.0/32"), netip.MustParsePrefix("fd64::5/128")
	want := time.Date(2026, 11, 30, 7, 20, 28, 464365000, time.Local)
	if got := rt.received[p4][netip.MustParseAddr("10.88.0.1")]; len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("received %s: %v, want [%v]", p4, got, want)
	}
	if got := rt.received[p6][netip.MustParseAddr("fd88::2")]; len(got) != 1 {
		t.Errorf("received %s: %v, want one", p6, got)
	}
	if got := rt.toZebra[p4]; len(got) != 1 || got[0].Sub(want) != 49635*time.Microsecond {
		t.Errorf("to zebra %s: %v", p4, got)
	}
	if len(rt.received) != 2 || len(rt.toZebra) != 1 {
		t.Errorf("parsed %d received and %d to zebra, want 2 and 1 (the rest is not a prefix line)", len(rt.received), len(rt.toZebra))
	}
	ft, err := parseForwarderTrace(strings.NewReader(forwarderLog))
	if err != nil {
		t.Fatal(err)
	}
	if h := ft[p4]; len(ft) != 1 || len(h) != 1 || h[0].patched.Sub(h[0].queued) != 8830*time.Microsecond ||
		h[0].patched.Sub(h[0].planned) != 550*time.Microsecond {
		t.Errorf("forwarder trace %v", ft)
	}
}

// FuzzParseTraces: the log parsers take any input without panicking.
func FuzzParseTraces(f *testing.F) {
	f.Add(bgpdLog)
	f.Add(forwarderLog)
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseRouterTrace(strings.NewReader(s)); err != nil {
			t.Skip(err)
		}
		if _, err := parseForwarderTrace(strings.NewReader(s)); err != nil {
			t.Skip(err)
		}
	})
}
