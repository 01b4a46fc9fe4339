// Package netlab builds a small Ethernet on one machine for tests and
// benchmarks: a Linux bridge in its own network namespace and hosts (node or
// client namespaces) attached to it by veth pairs. It needs root and the ip
// command (iproute2). Every name carries a random prefix, so labs of
// parallel tests never collide, and Close removes everything.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
)

// Lab is one bridge and the hosts on it.
type Lab struct {
	id  string
	lan string // namespace holding the bridge

	mu    sync.Mutex
	hosts []*Host
}

// Host is a network namespace with one interface, eth0, on the lab bridge.
type Host struct {
	Name string
	// NS is the network namespace name (for ip netns exec).
	NS string
	// Link is the interface inside NS ("eth0").
	Link string
	MAC  net.HardwareAddr
	IPv4 netip.Prefix
	IPv6 netip.Prefix

	lab    *Lab
	bridge string // the veth end on the bridge
}

// Run runs the ip command (or another tool) with args and returns its
// combined output.
func Run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// New creates the bridge.
func New() (*Lab, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	l := &Lab{id: hex.EncodeToString(b)}
	l.lan = "pl-" + l.id + "-lan"
	for _, args := range [][]string{
		{"netns", "add", l.lan},
		{"-n", l.lan, "link", "add", "br0", "type", "bridge", "forward_delay", "0"},
		{"-n", l.lan, "link", "set", "br0", "up"},
	} {
		if _, err := Run("ip", args...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// ID is the lab's random prefix.
func (l *Lab) ID() string { return l.id }

// AddHost creates a namespace named after name, attaches it to the bridge
// and assigns the addresses (either may be the zero Prefix).
func (l *Lab) AddHost(name string, v4, v6 netip.Prefix) (*Host, error) {
	l.mu.Lock()
	idx := len(l.hosts)
	l.mu.Unlock()
	h := &Host{
		Name: name, NS: "pl-" + l.id + "-" + name, Link: "eth0", IPv4: v4, IPv6: v6, lab: l,
		bridge: fmt.Sprintf("pl%sb%d", l.id, idx),
	}
	tmp := fmt.Sprintf("pl%sh%d", l.id, idx)
	cmds := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1"},
		{"ip", "link", "add", tmp, "type", "veth", "peer", "name", h.bridge},
		{"ip", "link", "set", tmp, "netns", h.NS},
		{"ip", "link", "set", h.bridge, "netns", l.lan},
		{"ip", "-n", h.NS, "link", "set", tmp, "name", h.Link},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", h.NS, "link", "set", h.Link, "up"},
		{"ip", "-n", l.lan, "link", "set", h.bridge, "master", "br0"},
		{"ip", "-n", l.lan, "link", "set", h.bridge, "up"},
	}
	if v4.IsValid() {
		cmds = append(cmds, []string{"ip", "-n", h.NS, "addr", "add", v4.String(), "dev", h.Link})
	}
	if v6.IsValid() {
		cmds = append(cmds, []string{"ip", "-n", h.NS, "addr", "add", v6.String(), "dev", h.Link, "nodad"})
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	for _, c := range cmds {
		if _, err := Run(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Link)
		if err != nil {
			return err
		}
		h.MAC = ifi.HardwareAddr
		return nil
	})
	return h, err
}

// Close deletes every namespace of the lab; the veth pairs go with them.
func (l *Lab) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		_, _ = Run("ip", "netns", "del", h.NS)
	}
	l.hosts = nil
	_, _ = Run("ip", "netns", "del", l.lan)
}

// Do runs fn on an OS thread switched into the host's namespace. Sockets fn
// opens stay in that namespace after it returns.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked on purpose when switching back fails:
		// the runtime then discards it instead of reusing a thread in the
		// wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(h.NS)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("returning from %s: %w", h.NS, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Command returns cmd to run inside the host's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// IP runs "ip -n <ns> args...".
func (h *Host) IP(args ...string) (string, error) {
	return Run("ip", append([]string{"-n", h.NS}, args...)...)
}

// SetCable plugs (true) or unplugs (false) the host's cable: the bridge side
// of its veth goes up or down, as when a switch port dies.
func (h *Host) SetCable(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := Run("ip", "-n", h.lab.lan, "link", "set", h.bridge, state)
	return err
}

// Neighbor returns the MAC the host's kernel has resolved for ip ("" when
// none, or when the entry is INCOMPLETE/FAILED).
func (h *Host) Neighbor(ip netip.Addr) (string, error) {
	out, err := h.IP("neigh", "show", ip.String(), "dev", h.Link)
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1], nil
		}
	}
	return "", nil
}

// ForwardTCP listens on listen inside the host's namespace and relays every
// connection to target as dialled from the caller's namespace. Tests use it
// to let processes in a node namespace reach an apiserver on the host's
// loopback. It stops when stop is closed.
func (h *Host) ForwardTCP(listen, target string, stop <-chan struct{}) error {
	var ln net.Listener
	if err := h.Do(func() (err error) { ln, err = net.Listen("tcp", listen); return err }); err != nil {
		return err
	}
	go func() {
		<-stop
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relay(c, target)
		}
	}()
	return nil
}

func relay(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// AddHostBehind creates a host that is not on the bridge: a namespace joined
// to gw by its own veth pair, on the subnet of addr (gw's end gets gwAddr),
// with its default route through gw. It stands for a client on another
// subnet that reaches the lab only through gw (a router). Close removes it.
func (l *Lab) AddHostBehind(name string, gw *Host, gwAddr, addr netip.Prefix) (*Host, error) {
	l.mu.Lock()
	idx := len(l.hosts)
	l.mu.Unlock()
	h := &Host{Name: name, NS: "pl-" + l.id + "-" + name, Link: "eth0", IPv4: addr, lab: l}
	gwLink := fmt.Sprintf("pl%sg%d", l.id, idx)
	tmp := fmt.Sprintf("pl%sh%d", l.id, idx)
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	for _, c := range [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "link", "add", tmp, "type", "veth", "peer", "name", gwLink},
		{"ip", "link", "set", tmp, "netns", h.NS},
		{"ip", "link", "set", gwLink, "netns", gw.NS},
		{"ip", "-n", h.NS, "link", "set", tmp, "name", h.Link},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", h.NS, "link", "set", h.Link, "up"},
		{"ip", "-n", gw.NS, "link", "set", gwLink, "up"},
		{"ip", "-n", gw.NS, "addr", "add", gwAddr.String(), "dev", gwLink},
		{"ip", "-n", h.NS, "addr", "add", addr.String(), "dev", h.Link},
		{"ip", "-n", h.NS, "route", "add", "default", "via", gwAddr.Addr().String()},
	} {
		if _, err := Run(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	return h, nil
}
