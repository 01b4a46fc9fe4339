// Package dptest builds pods behind a node for the dataplane's kernel tests
// and benchmarks, on top of e2e/netlab: each pod is a network namespace
// joined to the node namespace by a veth pair, with a real TCP/UDP server
// that answers with its name and the client address it saw. It needs root.
package dptest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/e2e/netlab"
)

// Pod is a namespace behind a node.
type Pod struct {
	*netlab.Host
	// Addr is the pod's address; Gateway the node's address on the link.
	Addr    netip.Addr
	Gateway netip.Addr
}

// EnableForwarding turns on IPv4 forwarding in the node's namespace.
func EnableForwarding(node *netlab.Host) error {
	_, err := netlab.Run("ip", "netns", "exec", node.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return err
}

// AddPod creates pod idx (1-250) behind node: pod address 10.200.<idx>.2,
// node address 10.200.<idx>.1, with a default route through the node.
// Remove deletes it.
func AddPod(labID string, node *netlab.Host, idx int) (*Pod, error) {
	p := &Pod{
		Host:    &netlab.Host{Name: fmt.Sprintf("pod%d", idx), NS: fmt.Sprintf("pl-%s-pod%d", labID, idx), Link: "eth0"},
		Addr:    netip.AddrFrom4([4]byte{10, 200, byte(idx), 2}),
		Gateway: netip.AddrFrom4([4]byte{10, 200, byte(idx), 1}),
	}
	p.IPv4 = netip.PrefixFrom(p.Addr, 24)
	nodeLink := fmt.Sprintf("pod%d", idx)
	tmp := fmt.Sprintf("pl%sq%d", labID, idx)
	cmds := [][]string{
		{"netns", "add", p.NS},
		{"link", "add", tmp, "type", "veth", "peer", "name", nodeLink, "netns", node.NS},
		{"link", "set", tmp, "netns", p.NS},
		{"-n", p.NS, "link", "set", tmp, "name", "eth0"},
		{"-n", p.NS, "link", "set", "lo", "up"},
		{"-n", p.NS, "link", "set", "eth0", "up"},
		{"-n", p.NS, "addr", "add", p.IPv4.String(), "dev", "eth0"},
		{"-n", p.NS, "route", "add", "default", "via", p.Gateway.String()},
		{"-n", node.NS, "addr", "add", p.Gateway.String() + "/24", "dev", nodeLink},
		{"-n", node.NS, "link", "set", nodeLink, "up"},
	}
	for _, c := range cmds {
		if _, err := netlab.Run("ip", c...); err != nil {
			p.Remove()
			return nil, err
		}
	}
	return p, nil
}

// Remove deletes the pod's namespace (and with it the veth pair).
func (p *Pod) Remove() { _, _ = netlab.Run("ip", "netns", "del", p.NS) }

// Server is a TCP and UDP echo-who server in a namespace: to every TCP
// connection and UDP datagram it answers "<name> <client address>\n".
type Server struct {
	tcp  net.Listener
	udp  net.PacketConn
	wg   sync.WaitGroup
	name string
}

// Serve starts a Server on port (TCP and UDP) inside h.
func Serve(h *netlab.Host, name string, port int) (*Server, error) {
	s := &Server{name: name}
	err := h.Do(func() error {
		var err error
		if s.tcp, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		s.udp, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.tcp.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%s %s\n", s.name, c.RemoteAddr())
			_ = c.Close()
		}
	}()
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 1500)
		for {
			_, from, err := s.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = s.udp.WriteTo([]byte(fmt.Sprintf("%s %s\n", s.name, from)), from)
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
	s.wg.Wait()
}

// Reply is what a Server answered: its name and the client address it saw.
type Reply struct {
	Server string
	Client netip.Addr
}

func parseReply(line string) (Reply, error) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return Reply{}, fmt.Errorf("unexpected reply %q", line)
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return Reply{}, fmt.Errorf("unexpected reply %q: %w", line, err)
	}
	return Reply{Server: f[0], Client: ap.Addr().Unmap()}, nil
}

// AskTCP opens a new TCP connection from inside h to addr and returns the
// server's reply.
func AskTCP(h *netlab.Host, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	var c net.Conn
	if err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	}); err != nil {
		return Reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return Reply{}, err
	}
	return parseReply(line)
}

// AskUDP sends one datagram from a new socket inside h to addr and returns
// the reply.
func AskUDP(h *netlab.Host, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	var c net.Conn
	if err := h.Do(func() error {
		var err error
		c, err = net.Dial("udp", addr.String())
		return err
	}); err != nil {
		return Reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("hello")); err != nil {
		return Reply{}, err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return Reply{}, err
	}
	return parseReply(string(buf[:n]))
}

// ServeEcho starts a TCP server on port inside h that greets each
// connection with "<name> <client address>\n" and then echoes what it
// reads until the client closes: a long-lived connection for tests.
func ServeEcho(h *netlab.Host, name string, port int) (net.Listener, error) {
	var ln net.Listener
	if err := h.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}
