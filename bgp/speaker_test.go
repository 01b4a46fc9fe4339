// Go makes listeners MPTCP by default; MPTCP sockets refuse TCP MD5
// (ENOPROTOOPT), so the in-process router listens on plain TCP.
//
//go:debug multipathtcp=0

package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apipb "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// router is an in-process GoBGP router listening on loopback, standing in
// for a top-of-rack switch in unit tests (e2e/bgp uses FRR).
type router struct {
	srv  *server.BgpServer
	port uint16
}

func startRouter(t *testing.T, asn uint32, port uint16, neighborASN uint32, password string) *router {
	t.Helper()
	srv := server.NewBgpServer(server.LoggerOption(&logAdapter{log: testr.NewWithOptions(t, testr.Options{Verbosity: 2}).WithName("router")}))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &apipb.StartBgpRequest{Global: &apipb.Global{Asn: asn, RouterId: "192.0.2.254",
		ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddPeer(ctx, &apipb.AddPeerRequest{Peer: &apipb.Peer{
		Conf:      &apipb.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: neighborASN, AuthPassword: password},
		Transport: &apipb.Transport{PassiveMode: true},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.StopBgp(context.Background(), &apipb.StopBgpRequest{}) })
	return &router{srv: srv, port: port}
}

// routes lists the router's RIB as "prefix communities localpref".
func (r *router) routes(t *testing.T) []string {
	var out []string
	for _, fam := range []*apipb.Family{family(netip.MustParseAddr("10.0.0.1")), family(netip.MustParseAddr("::1"))} {
		err := r.srv.ListPath(context.Background(), &apipb.ListPathRequest{TableType: apipb.TableType_GLOBAL, Family: fam}, func(d *apipb.Destination) {
			for _, p := range d.Paths {
				s := d.Prefix
				for _, a := range p.Pattrs {
					var c apipb.CommunitiesAttribute
					if a.UnmarshalTo(&c) == nil {
						s += fmt.Sprint(" ", c.Communities)
					}
				}
				out = append(out, s)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSpeakerAdvertisesAndWithdraws drives a Speaker against a GoBGP router
// over real TCP (with a TCP MD5 password): the plan's prefixes with their
// communities appear in the router's RIB, a prefix dropped from the plan is
// withdrawn, and Close withdraws everything. The session's state and count
// are reported.
func TestSpeakerAdvertisesAndWithdraws(t *testing.T) {
	old := ConnectRetry
	ConnectRetry = time.Second
	t.Cleanup(func() { ConnectRetry = old })
	r := startRouter(t, 64512, 21179, 64513, "s3cret")
	sp := NewSpeaker(SpeakerConfig{RouterID: netip.MustParseAddr("127.0.0.1"), NodeName: "n1", Log: testr.NewWithOptions(t, testr.Options{Verbosity: 2})})
	peer := Peer{Name: "tor", Address: netip.MustParseAddr("127.0.0.1"), Port: r.port, PeerASN: 64512, MyASN: 64513,
		Password: "s3cret", HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second}
	ctx := context.Background()
	plan := map[string]PeerPlan{"tor": {Peer: peer, Routes: []Route{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Communities: []string{"65000:7"}},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32")},
	}}}
	if err := sp.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "routes at the router", func() error {
		if got := fmt.Sprint(r.routes(t)); got != "[192.0.2.1/32 [4259840007] 192.0.2.2/32]" {
			return fmt.Errorf("router has %s", got)
		}
		return nil
	})
	st := sp.Sessions(ctx)["tor"]
	if st.State != StateEstablished || st.Advertised != 2 || st.EstablishedSince.IsZero() {
		t.Errorf("session %+v, want Established with 2 advertised", st)
	}
	plan["tor"] = PeerPlan{Peer: peer, Routes: plan["tor"].Routes[1:]}
	if err := sp.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "withdrawal", func() error {
		if got := fmt.Sprint(r.routes(t)); got != "[192.0.2.2/32]" {
			return fmt.Errorf("router has %s", got)
		}
		return nil
	})
	// Patch changes only the prefixes it names: a new one, a changed
	// community, a withdrawal, and one to a peer without a session.
	if err := sp.Patch(ctx, Delta{"tor": {
		netip.MustParsePrefix("192.0.2.3/32"): {Prefix: netip.MustParsePrefix("192.0.2.3/32")},
		netip.MustParsePrefix("192.0.2.2/32"): {Prefix: netip.MustParsePrefix("192.0.2.2/32"), Communities: []string{"65000:8"}},
	}, "none": {netip.MustParsePrefix("192.0.2.9/32"): {Prefix: netip.MustParsePrefix("192.0.2.9/32")}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "patched routes", func() error {
		if got := fmt.Sprint(r.routes(t)); got != "[192.0.2.2/32 [4259840008] 192.0.2.3/32]" {
			return fmt.Errorf("router has %s", got)
		}
		return nil
	})
	if err := sp.Patch(ctx, Delta{"tor": {netip.MustParsePrefix("192.0.2.2/32"): nil}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "patched withdrawal", func() error {
		if got := fmt.Sprint(r.routes(t)); got != "[192.0.2.3/32]" {
			return fmt.Errorf("router has %s", got)
		}
		return nil
	})
	if st := sp.Sessions(ctx)["tor"]; st.Advertised != 1 {
		t.Errorf("session advertises %d, want 1", st.Advertised)
	}
	sp.Close(ctx)
	waitFor(t, "withdrawal on close", func() error {
		if got := r.routes(t); len(got) != 0 {
			return fmt.Errorf("router still has %s", got)
		}
		return nil
	})
}

// TestSpeakerWrongPassword: a session whose password the router does not
// share never establishes and advertises nothing.
func TestSpeakerWrongPassword(t *testing.T) {
	r := startRouter(t, 64512, 21180, 64513, "right")
	sp := NewSpeaker(SpeakerConfig{RouterID: netip.MustParseAddr("127.0.0.1"), NodeName: "n1", Log: testr.NewWithOptions(t, testr.Options{Verbosity: 2})})
	t.Cleanup(func() { sp.Close(context.Background()) })
	peer := Peer{Name: "tor", Address: netip.MustParseAddr("127.0.0.1"), Port: r.port, PeerASN: 64512, MyASN: 64513,
		Password: "wrong", HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second}
	if err := sp.Apply(context.Background(), map[string]PeerPlan{"tor": {Peer: peer, Routes: []Route{{Prefix: netip.MustParsePrefix("192.0.2.1/32")}}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if st := sp.Sessions(context.Background())["tor"]; st.State == StateEstablished || st.Advertised != 0 {
		t.Errorf("session %+v with the wrong password", st)
	}
	if got := r.routes(t); len(got) != 0 {
		t.Errorf("router learned %v over a session with the wrong password", got)
	}
}
