package announce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

func TestDecide(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.10")
	nodes := []string{"n1", "n2", "n3"}
	top := Decide(a, nodes, nil)
	tests := []struct {
		name      string
		eligible  []string
		claimants []string
		want      string
	}{
		{"order does not matter", []string{"n3", "n1", "n2"}, nil, top},
		{"nobody eligible", nil, nil, ""},
		{"claimant keeps it", nodes, []string{other(top, nodes)}, other(top, nodes)},
		{"two claimants resolve to the higher score", nodes, []string{top, other(top, nodes)}, top},
		{"ineligible claimant is ignored", []string{"n1", "n2", "n3"}, []string{"gone"}, top},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(a, tc.eligible, tc.claimants); got != tc.want {
				t.Fatalf("Decide = %q, want %q", got, tc.want)
			}
		})
	}
}

func other(not string, nodes []string) string {
	for _, n := range nodes {
		if n != not {
			return n
		}
	}
	return ""
}

// TestDecideSpreadsAndMovesMinimally checks rendezvous hashing's two
// properties: addresses spread over nodes, and removing a node moves only
// the addresses it held.
func TestDecideSpreadsAndMovesMinimally(t *testing.T) {
	nodes := []string{"node-a", "node-b", "node-c", "node-d"}
	count := map[string]int{}
	before := map[netip.Addr]string{}
	for i := range 200 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i % 250)})
		before[a] = Decide(a, nodes, nil)
		count[before[a]]++
	}
	for _, n := range nodes {
		if count[n] < 25 {
			t.Errorf("node %s got %d of 200 addresses; the spread is too uneven: %v", n, count[n], count)
		}
	}
	for a, owner := range before {
		after := Decide(a, []string{"node-a", "node-c", "node-d"}, nil)
		if owner != "node-b" && after != owner {
			t.Fatalf("%s moved from %s to %s although only node-b left", a, owner, after)
		}
	}
}

// TestAssignExactlyOneAnnouncer is the steady-state guarantee: whenever the
// forwarders share one view, every address has exactly one announcer, for
// any mix of prior claims, readiness, traffic policy and endpoints, also when
// several Services (entries) share an address; and when one node serves
// every Local sharer of an address, the announcer is such a node.
func TestAssignExactlyOneAnnouncer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"a", "b", "c", "d", "e"}
	for round := range 2000 {
		var in Inputs
		for _, n := range nodes {
			if rng.IntN(5) > 0 {
				in.ReadyNodes = append(in.ReadyNodes, n)
			}
		}
		var alive []string
		for _, n := range nodes {
			if rng.IntN(6) > 0 {
				alive = append(alive, n)
			}
		}
		for i := range 1 + rng.IntN(6) {
			ad := Address{IP: addr(rng.IntN(4)), Service: fmt.Sprint("svc-", i), LocalOnly: rng.IntN(2) == 0}
			for _, n := range nodes {
				if rng.IntN(2) == 0 {
					ad.EndpointNodes = append(ad.EndpointNodes, n)
				}
			}
			in.Addresses = append(in.Addresses, ad)
		}
		// Random prior claims, some conflicting (as right after a partition
		// heals).
		claims := map[string][]netip.Addr{}
		for _, n := range alive {
			for _, ad := range in.Addresses {
				if rng.IntN(3) == 0 {
					claims[n] = append(claims[n], ad.IP)
				}
			}
		}
		announcers := map[netip.Addr][]string{}
		var owners0 map[netip.Addr]string
		for _, self := range alive {
			view := View{Alive: alive, Quorum: true, Claims: map[string][]netip.Addr{}}
			for n, c := range claims {
				if n != self {
					view.Claims[n] = c
				}
			}
			owners, mine := Assign(AssignInput{Self: self, Inputs: in, View: view, Mine: claims[self]})
			if owners0 == nil {
				owners0 = owners
			} else if fmt.Sprint(owners) != fmt.Sprint(owners0) {
				t.Fatalf("round %d: forwarders disagree on owners: %v vs %v", round, owners0, owners)
			}
			for _, a := range mine {
				announcers[a] = append(announcers[a], self)
			}
		}
		for _, ad := range in.Addresses {
			// Nodes that may serve the address: Ready, alive, and for each
			// Local sharer an endpoint; any of them for a Cluster sharer.
			var all, some []string
			anyCluster := false
			for _, n := range alive {
				if !slices.Contains(in.ReadyNodes, n) {
					continue
				}
				servesAll, servesSome := true, false
				for _, sh := range in.Addresses {
					if sh.IP != ad.IP {
						continue
					}
					if !sh.LocalOnly {
						anyCluster = true
						continue
					}
					has := slices.Contains(sh.EndpointNodes, n)
					servesAll, servesSome = servesAll && has, servesSome || has
				}
				if servesAll {
					all = append(all, n)
				}
				if servesSome || anyCluster {
					some = append(some, n)
				}
			}
			got := announcers[ad.IP]
			if (len(some) > 0 && len(got) != 1) || (len(some) == 0 && len(got) != 0) {
				t.Fatalf("round %d: %s has announcers %v with %d eligible nodes (inputs %+v, alive %v, claims %v)",
					round, ad.IP, got, len(some), in, alive, claims)
			}
			if len(all) > 0 && !slices.Contains(all, got[0]) {
				t.Fatalf("round %d: %s announced by %s, but %v serve every sharer (inputs %+v)", round, ad.IP, got[0], all, in)
			}
		}
	}
}

func TestAssignLocalPolicy(t *testing.T) {
	in := Inputs{
		ReadyNodes: []string{"a", "b", "c"},
		Addresses:  []Address{{IP: addr(1), LocalOnly: true, EndpointNodes: []string{"c"}}},
	}
	owners, mine := Assign(AssignInput{Self: "c", Inputs: in, View: View{Alive: []string{"a", "b", "c"}, Quorum: true}})
	if owners[addr(1)] != "c" || len(mine) != 1 {
		t.Fatalf("only c has an endpoint: owners %v mine %v", owners, mine)
	}
	// c's forwarder is dead (not alive): nobody may announce.
	owners, _ = Assign(AssignInput{Self: "a", Inputs: in, View: View{Alive: []string{"a", "b"}, Quorum: true}})
	if owners[addr(1)] != "" {
		t.Fatalf("no eligible node, yet owner %q", owners[addr(1)])
	}
	// A node that is alive but not Ready is not eligible.
	in.Addresses[0].LocalOnly = false
	in.ReadyNodes = []string{"b"}
	owners, _ = Assign(AssignInput{Self: "a", Inputs: in, View: View{Alive: []string{"a", "b", "c"}, Quorum: true}})
	if owners[addr(1)] != "b" {
		t.Fatalf("only b is Ready: owner %q", owners[addr(1)])
	}
}
