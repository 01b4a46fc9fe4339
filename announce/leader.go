// Package announce decides which node answers ARP/NDP for each local
// load-balancer address and does the answering.
//
// Every portico-forwarder runs the same pure decision (Decide) over the same
// inputs: the nodes that are Ready, whose forwarder it hears on the heartbeat
// (Members), and, for externalTrafficPolicy Local, that hold a ready endpoint.
// Services that share an address are decided together (Eligible), so an
// address has one announcer however many Services carry it.
// Rendezvous hashing picks among them, so forwarders agree without a lock;
// a node that already announces an address keeps it while it stays eligible
// (heartbeats carry each node's claims), so a returning node does not pull
// traffic back. Responder answers ARP who-has and NDP neighbour solicitations
// for the addresses this node won and sends gratuitous ARP / unsolicited
// neighbour advertisements when it takes one over.
package announce

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
)

// Score is node's rendezvous weight for addr; the highest weight wins.
func Score(addr netip.Addr, node string) uint64 {
	h := sha256.New()
	b := addr.As16()
	h.Write(b[:])
	h.Write([]byte{0})
	h.Write([]byte(node))
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Decide returns the node that should announce addr: among the eligible
// nodes that already claim it the one with the highest Score (so an
// announcer keeps its address and two claimants resolve to one), otherwise
// the eligible node with the highest Score. It returns "" when no node is
// eligible.
func Decide(addr netip.Addr, eligible, claimants []string) string {
	var held []string
	for _, c := range claimants {
		if slices.Contains(eligible, c) {
			held = append(held, c)
		}
	}
	if len(held) > 0 {
		return highest(addr, held)
	}
	return highest(addr, eligible)
}

func highest(addr netip.Addr, nodes []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		s := Score(addr, n)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}
