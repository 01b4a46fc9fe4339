package announce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
//
// The interface may be missing, down or without carrier at any time,
// including at start: the responder then waits (Ready says why, the
// announcer stands by) and opens its sockets again when the link returns,
// repeating the gratuitous announcements of what it holds.
type Responder struct {
	cfg ResponderConfig
	// ns is the network namespace the responder was created in; sockets
	// are (re)opened there whatever thread Run is on.
	ns   netns.NsHandle
	nl   *netlink.Handle
	log  logr.Logger
	mu   sync.Mutex
	ifi  *net.Interface
	arp  *packet.Conn
	ndp  *packet.Conn
	down error
	mine map[netip.Addr]bool
	// gen counts takeovers per address, so a stale gratuitous schedule
	// stops when the address was released meanwhile.
	gen map[netip.Addr]int
	// OnReadyChange, when set, is called after Ready changed.
	OnReadyChange func()
}

// ResponderConfig says which interface to answer on.
type ResponderConfig struct {
	// Interface is the interface name. Empty: the interface that holds
	// Address (the node's InternalIP), looked up again whenever the link is
	// lost.
	Interface string
	Address   netip.Addr
	// Poll is how often the link state is checked. Default 50ms.
	Poll time.Duration
}

// NewResponder returns a responder on interface name; Run opens its sockets.
func NewResponder(name string) (*Responder, error) {
	return NewResponderFor(ResponderConfig{Interface: name})
}

// NewResponderFor returns a responder; Run opens its sockets. The current
// thread's network namespace is the one it answers in.
func NewResponderFor(cfg ResponderConfig) (*Responder, error) {
	if cfg.Interface == "" && !cfg.Address.IsValid() {
		return nil, errors.New("responder needs an interface or the node's address")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	// The handle's sockets open in this thread's namespace: NewHandleAt(ns)
	// would setns into it even so, which needs CAP_SYS_ADMIN, and the
	// forwarder's Pod grants only NET_ADMIN and NET_RAW (the image test
	// hack/images TestForwarderImageInNodeNamespace runs it that way).
	nl, err := netlink.NewHandle()
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Responder{cfg: cfg, ns: ns, nl: nl, down: errors.New("not started"),
		mine: map[netip.Addr]bool{}, gen: map[netip.Addr]int{}, log: logr.Discard()}, nil
}

// Ready returns why the responder cannot answer now, nil when it can.
func (r *Responder) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down
}

// link finds the interface to answer on and checks it is up with carrier.
func (r *Responder) link() (netlink.Link, error) {
	name := r.cfg.Interface
	if name == "" {
		l, err := InterfaceWithAddr(r.nl, r.cfg.Address)
		if err != nil {
			return nil, err
		}
		name = l.Attrs().Name
	}
	l, err := r.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("announce interface %q: %w", name, err)
	}
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("announce interface %q is down", name)
	}
	if a.RawFlags&unix.IFF_LOWER_UP == 0 {
		return nil, fmt.Errorf("announce interface %q has no carrier", name)
	}
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce interface %q has no Ethernet address", name)
	}
	return l, nil
}

// InterfaceWithAddr returns the link that holds ip.
func InterfaceWithAddr(h *netlink.Handle, ip netip.Addr) (netlink.Link, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip.Unmap() {
			return h.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface holds the node address %s", ip)
}

// open opens the raw sockets on the interface, in the responder's namespace.
func (r *Responder) open() (*net.Interface, *packet.Conn, *packet.Conn, error) {
	l, err := r.link()
	if err != nil {
		return nil, nil, nil, err
	}
	a := l.Attrs()
	ifi := &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
	var ac, nc *packet.Conn
	err = r.inNS(func() error {
		var err error
		if ac, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil); err != nil {
			return fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
		}
		if nc, err = packet.Listen(ifi, packet.Raw, etherTypeIPv6, nil); err != nil {
			ac.Close()
			return fmt.Errorf("opening IPv6 socket on %s: %w", ifi.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := nc.SetBPF(nsFilter()); err != nil {
		ac.Close()
		nc.Close()
		return nil, nil, nil, fmt.Errorf("filtering neighbour solicitations on %s: %w", ifi.Name, err)
	}
	// Neighbour solicitations go to solicited-node multicast groups we never
	// join in the kernel; all-multicast makes the NIC pass them up.
	if err := allMulticast(nc, ifi.Index); err != nil {
		ac.Close()
		nc.Close()
		return nil, nil, nil, fmt.Errorf("enabling all-multicast on %s: %w", ifi.Name, err)
	}
	return ifi, ac, nc, nil
}

// inNS runs fn on a thread in the responder's network namespace.
func (r *Responder) inNS(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if orig.Equal(r.ns) {
		runtime.UnlockOSThread()
		return fn()
	}
	if err := netns.Set(r.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime discards it.
		return errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// HardwareAddr is the MAC the responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ifi == nil {
		return nil
	}
	return r.ifi.HardwareAddr
}

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

// Run answers requests until ctx ends. A lost link is waited out, never an
// error: Run returns only when ctx ends.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.log = logr.FromContextOrDiscard(ctx).WithName("responder")
	r.mu.Unlock()
	defer r.nl.Close()
	defer r.ns.Close()
	wait := time.NewTicker(r.cfg.Poll)
	defer wait.Stop()
	for {
		ifi, ac, nc, err := r.open()
		if err == nil {
			r.setUp(ifi, ac, nc)
			err = r.serve(ctx, ifi, ac, nc)
		}
		if ctx.Err() != nil {
			r.setDown(errors.New("stopped"))
			return nil
		}
		r.setDown(err)
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
	}
}

func (r *Responder) setUp(ifi *net.Interface, ac, nc *packet.Conn) {
	r.mu.Lock()
	r.ifi, r.arp, r.ndp, r.down = ifi, ac, nc, nil
	log, notify := r.log, r.OnReadyChange
	var held []netip.Addr
	for a := range r.mine {
		held = append(held, a)
	}
	r.mu.Unlock()
	metricInterfaceUp.Set(1)
	log.Info("Answering ARP/NDP", "interface", ifi.Name)
	// Neighbours may have followed another node meanwhile.
	r.Reannounce(held)
	if notify != nil {
		notify()
	}
}

func (r *Responder) setDown(err error) {
	r.mu.Lock()
	was := r.down
	r.down = err
	r.arp, r.ndp = nil, nil
	log, notify := r.log, r.OnReadyChange
	r.mu.Unlock()
	if was == nil || was.Error() != err.Error() {
		if was == nil {
			metricInterfaceDown.Inc()
		}
		metricInterfaceUp.Set(0)
		log.Info("Cannot answer ARP/NDP; waiting for the interface", "reason", err.Error())
		if notify != nil {
			notify()
		}
	}
}

// serve answers on the open sockets until one fails, the link goes down or
// ctx ends; it closes both.
func (r *Responder) serve(ctx context.Context, ifi *net.Interface, ac, nc *packet.Conn) error {
	errc := make(chan error, 3)
	go func() { errc <- r.serveARP(ac) }()
	go func() { errc <- r.serveNDP(nc) }()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(r.cfg.Poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			case <-stop:
				return
			case <-t.C:
			}
			l, err := r.link()
			if err == nil && l.Attrs().Index != ifi.Index {
				err = fmt.Errorf("announce interface %s was replaced", ifi.Name)
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	err := <-errc
	close(stop)
	ac.Close()
	nc.Close()
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
		log.Info("Announcing", "address", a)
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

// socket returns the interface and its ARP (or IPv6) socket, or why the
// responder cannot send now.
func (r *Responder) socket(arp bool) (*net.Interface, *packet.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down != nil {
		return nil, nil, r.down
	}
	if arp {
		return r.ifi, r.arp, nil
	}
	return r.ifi, r.ndp, nil
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
		if err != nil && r.Ready() == nil {
			log.Error(err, "Sending gratuitous announcement", "address", a)
		}
	}
}

func (r *Responder) serveARP(c *packet.Conn) error {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
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
	ifi, c, err := r.socket(true)
	if err != nil {
		return err
	}
	p, err := arp.NewPacket(op, ifi.HardwareAddr, ip, dstHW, dstIP)
	if err != nil {
		return err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := ethernet.Frame{Destination: ethDst, Source: ifi.HardwareAddr, EtherType: etherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = c.WriteTo(fb, &packet.Addr{HardwareAddr: ethDst})
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

func (r *Responder) serveNDP(c *packet.Conn) error {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
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
	ifi, c, err := r.socket(false)
	if err != nil {
		return err
	}
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
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
	f := ethernet.Frame{Destination: ethDst, Source: ifi.HardwareAddr, EtherType: etherTypeIPv6, Payload: ip6}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = c.WriteTo(fb, &packet.Addr{HardwareAddr: ethDst})
	return err
}
