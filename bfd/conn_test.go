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
	a := &Manager{Local: netip.MustParseAddr("127.0.0.1"), Log: testr.New(t)}
	b := &Manager{Local: netip.MustParseAddr("127.0.0.2"), Log: testr.New(t)}
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
	if err := a.Add(b.Local, cfg); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(a.Local, cfg); err != nil {
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
	waitState(a, b.Local, Up)
	waitState(b, a.Local, Up)
	a.Remove(b.Local)
	waitState(b, a.Local, Down)
	if err := a.Add(netip.MustParseAddr("2001:db8::1"), cfg); err == nil {
		t.Error("an IPv6 peer was accepted")
	}
}
