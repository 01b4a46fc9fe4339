package bfd

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// TestManagersOverUDP: two managers on loopback addresses bring their
// session Up over real UDP (TTL 255, port 3784), and when one ends its
// session the other hears AdminDown and goes Down.
func TestManagersOverUDP(t *testing.T) {
	aAddr, bAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	a := &Manager{Locals: []netip.Addr{aAddr}, Log: testr.New(t)}
	b := &Manager{Locals: []netip.Addr{bAddr}, Log: testr.New(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, m := range []*Manager{a, b} {
		go func() {
			if err := m.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	cfg := Config{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
	if err := a.Add(bAddr, cfg); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(aAddr, cfg); err != nil {
		t.Fatal(err)
	}
	waitState := func(m *Manager, peer netip.Addr, want State) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if st, _ := m.State(peer); st == want {
				return
			}
			if time.Now().After(deadline) {
				st, _ := m.State(peer)
				t.Fatalf("session with %s is %s, want %s", peer, st, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitState(a, bAddr, Up)
	waitState(b, aAddr, Up)
	a.Remove(bAddr)
	waitState(b, aAddr, Down)
	if err := a.Add(netip.MustParseAddr("fe80::1"), cfg); err == nil {
		t.Error("a link-local peer was accepted")
	}
}
