package announce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86DD
)

// GratuitousSchedule is when, after taking an address over, the responder
// repeats gratuitous ARP / unsolicited NA, to survive a lost frame.
var GratuitousSchedule = []time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond, time.Second}

// Responder answers ARP and NDP on one interface for the addresses it is
// told to announce. It uses raw packet sockets, so the addresses need not be
// configured on the interface.
type Responder struct {
	ifi  *net.Interface
	arp  *packet.Conn
	ndp  *packet.Conn
	log  logr.Logger
	mu   sync.Mutex
	mine map[netip.Addr]bool
	// gen counts takeovers per address, so a stale gratuitous schedule
	// stops when the address was released meanwhile.
	gen map[netip.Addr]int
}

// NewResponder opens the raw sockets on interface name.
func NewResponder(name string) (*Responder, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("announce interface %q: %w", name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce interface %q has no Ethernet address", name)
	}
	ac, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("opening ARP socket on %s: %w", name, err)
	}
	nc, err := packet.Listen(ifi, packet.Raw, etherTypeIPv6, nil)
	if err != nil {
		ac.Close()
		return nil, fmt.Errorf("opening IPv6 socket on %s: %w", name, err)
	}
	if err := nc.SetBPF(nsFilter()); err != nil {
		ac.Close()
		nc.Close()
		return nil, fmt.Errorf("filtering neighbour solicitations on %s: %w", name, err)
	}
	// Neighbour solicitations go to solicited-node multicast groups we never
	// join in the kernel; all-multicast makes the NIC pass them up.
	if err := allMulticast(nc, ifi.Index); err != nil {
		ac.Close()
		nc.Close()
		return nil, fmt.Errorf("enabling all-multicast on %s: %w", name, err)
	}
	return &Responder{ifi: ifi, arp: ac, ndp: nc, mine: map[netip.Addr]bool{}, gen: map[netip.Addr]int{}, log: logr.Discard()}, nil
}

// HardwareAddr is the MAC the responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr { return r.ifi.HardwareAddr }

// nsFilter accepts IPv6 frames carrying an ICMPv6 neighbour solicitation
// without extension headers.
func nsFilter() []bpf.RawInstruction {
	prog, _ := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 14 + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 58, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 14 + 40, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ipv6.ICMPTypeNeighborSolicitation), SkipTrue: 1},
		bpf.RetConstant{Val: 65535},
		bpf.RetConstant{Val: 0},
	})
	return prog
}

func allMulticast(c *packet.Conn, index int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP,
			&unix.PacketMreq{Ifindex: int32(index), Type: unix.PACKET_MR_ALLMULTI})
	})
	return errors.Join(err, serr)
}

// Close closes the sockets; Run returns.
func (r *Responder) Close() error { return errors.Join(r.arp.Close(), r.ndp.Close()) }

// Run answers requests until ctx ends.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.log = logr.FromContextOrDiscard(ctx).WithName("responder")
	r.mu.Unlock()
	go func() {
		<-ctx.Done()
		r.Close()
	}()
	errc := make(chan error, 2)
	go func() { errc <- r.serveARP() }()
	go func() { errc <- r.serveNDP() }()
	err := <-errc
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Set replaces the announced addresses. Addresses new to the set are
// announced at once by gratuitous ARP / unsolicited NA.
func (r *Responder) Set(addrs []netip.Addr) {
	r.mu.Lock()
	log := r.log
	var added []netip.Addr
	next := map[netip.Addr]bool{}
	for _, a := range addrs {
		next[a] = true
		if !r.mine[a] {
			added = append(added, a)
			r.gen[a]++
		}
	}
	for a := range r.mine {
		if !next[a] {
			r.gen[a]++
			log.Info("Stopped announcing", "address", a)
		}
	}
	r.mine = next
	gens := map[netip.Addr]int{}
	for _, a := range added {
		gens[a] = r.gen[a]
	}
	r.mu.Unlock()
	for _, a := range added {
		log.Info("Announcing", "address", a, "interface", r.ifi.Name)
		go r.gratuitous(log, a, gens[a])
	}
}

// Reannounce repeats gratuitous ARP / unsolicited NA for the addresses of
// addrs this responder announces.
func (r *Responder) Reannounce(addrs []netip.Addr) {
	r.mu.Lock()
	log := r.log
	gens := map[netip.Addr]int{}
	for _, a := range addrs {
		if r.mine[a] {
			r.gen[a]++
			gens[a] = r.gen[a]
		}
	}
	r.mu.Unlock()
	for a, g := range gens {
		go r.gratuitous(log, a, g)
	}
}

// Announcing returns the announced addresses, sorted.
func (r *Responder) Announcing() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Addr, 0, len(r.mine))
	for a := range r.mine {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (r *Responder) owns(a netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mine[a]
}

func (r *Responder) gratuitous(log logr.Logger, a netip.Addr, gen int) {
	start := time.Now()
	for _, at := range GratuitousSchedule {
		time.Sleep(time.Until(start.Add(at)))
		r.mu.Lock()
		current := r.mine[a] && r.gen[a] == gen
		r.mu.Unlock()
		if !current {
			return
		}
		var err error
		if a.Is4() {
			err = r.sendGratuitousARP(a)
		} else {
			err = r.sendUnsolicitedNA(a)
		}
		if err != nil {
			log.Error(err, "Sending gratuitous announcement", "address", a)
		}
	}
}

func (r *Responder) serveARP() error {
	buf := make([]byte, 1500)
	for {
		n, _, err := r.arp.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("reading ARP: %w", err)
		}
		var f ethernet.Frame
		if f.UnmarshalBinary(buf[:n]) != nil {
			continue
		}
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil || p.Operation != arp.OperationRequest {
			continue
		}
		if !r.owns(p.TargetIP) || p.SenderIP == p.TargetIP {
			continue
		}
		if err := r.writeARP(arp.OperationReply, p.TargetIP, p.SenderHardwareAddr, p.SenderIP, p.SenderHardwareAddr); err != nil {
			r.log.Error(err, "Answering ARP", "address", p.TargetIP)
		}
	}
}

func (r *Responder) writeARP(op arp.Operation, ip netip.Addr, dstHW net.HardwareAddr, dstIP netip.Addr, ethDst net.HardwareAddr) error {
	p, err := arp.NewPacket(op, r.ifi.HardwareAddr, ip, dstHW, dstIP)
	if err != nil {
		return err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := ethernet.Frame{Destination: ethDst, Source: r.ifi.HardwareAddr, EtherType: etherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = r.arp.WriteTo(fb, &packet.Addr{HardwareAddr: ethDst})
	return err
}

// sendGratuitousARP broadcasts both forms, a request and a reply with sender
// and target set to a: hosts differ in which one refreshes their cache.
func (r *Responder) sendGratuitousARP(a netip.Addr) error {
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	return errors.Join(
		r.writeARP(arp.OperationRequest, a, zero, a, ethernet.Broadcast),
		r.writeARP(arp.OperationReply, a, ethernet.Broadcast, a, ethernet.Broadcast),
	)
}

func (r *Responder) serveNDP() error {
	buf := make([]byte, 1500)
	for {
		n, _, err := r.ndp.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("reading NDP: %w", err)
		}
		sol, ok := parseSolicitation(buf[:n])
		if !ok || !r.owns(sol.target) {
			continue
		}
		if err := r.answerNS(sol.target, sol.src, sol.ethSrc); err != nil {
			r.log.Error(err, "Answering neighbour solicitation", "address", sol.target)
		}
	}
}

type solicitation struct {
	target, src netip.Addr
	ethSrc      net.HardwareAddr
}

// parseSolicitation reads an Ethernet frame carrying an ICMPv6 neighbour
// solicitation; frames come from the wire and may be anything.
func parseSolicitation(b []byte) (solicitation, bool) {
	if len(b) < 14+40+4 || binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
		return solicitation{}, false
	}
	ip6 := b[14:]
	if ip6[0]>>4 != 6 || ip6[6] != 58 || ip6[7] != 255 {
		return solicitation{}, false // not ICMPv6, or forwarded (hop limit must be 255)
	}
	src, _ := netip.AddrFromSlice(ip6[8:24])
	plen := int(binary.BigEndian.Uint16(ip6[4:6]))
	if 40+plen > len(ip6) {
		return solicitation{}, false
	}
	m, err := ndp.ParseMessage(ip6[40 : 40+plen])
	if err != nil {
		return solicitation{}, false
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || !ns.TargetAddress.Is6() || ns.TargetAddress.Is4In6() {
		return solicitation{}, false
	}
	return solicitation{target: ns.TargetAddress, src: src, ethSrc: net.HardwareAddr(slices.Clone(b[6:12]))}, true
}

func (r *Responder) answerNS(target, src netip.Addr, ethSrc net.HardwareAddr) error {
	if src.IsUnspecified() {
		// Duplicate address detection: tell everyone (RFC 4861 7.2.4).
		return r.writeNA(target, false, netip.IPv6LinkLocalAllNodes(), allNodesMAC)
	}
	return r.writeNA(target, true, src, ethSrc)
}

var allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

func (r *Responder) sendUnsolicitedNA(a netip.Addr) error {
	return r.writeNA(a, false, netip.IPv6LinkLocalAllNodes(), allNodesMAC)
}

func (r *Responder) writeNA(target netip.Addr, solicited bool, dst netip.Addr, ethDst net.HardwareAddr) error {
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.ifi.HardwareAddr}},
	}
	// The advertisement comes from the target address itself, which this
	// node answers for; it needs no address on the interface.
	body, err := ndp.MarshalMessageChecksum(na, target, dst)
	if err != nil {
		return err
	}
	ip6 := make([]byte, 40, 40+len(body))
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:6], uint16(len(body)))
	ip6[6], ip6[7] = 58, 255
	s, d := target.As16(), dst.As16()
	copy(ip6[8:24], s[:])
	copy(ip6[24:40], d[:])
	ip6 = append(ip6, body...)
	f := ethernet.Frame{Destination: ethDst, Source: r.ifi.HardwareAddr, EtherType: etherTypeIPv6, Payload: ip6}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = r.ndp.WriteTo(fb, &packet.Addr{HardwareAddr: ethDst})
	return err
}
