// Package frr runs FRRouting (Debian's frr package: zebra and bgpd) inside a
// netlab host as a test router: a top-of-rack switch that learns the
// Service addresses the forwarders advertise and installs them, with ECMP,
// in the namespace's kernel table. Tests read what it learned through
// vtysh and ip route. Every daemon runs in the foreground through
// testenv.Process with its files in a directory of its own, so labs never
// share FRR state.
package frr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/portico-lb/portico/e2e/netlab"
	"github.com/portico-lb/portico/internal/testenv"
)

// Dir is where Debian's frr package puts the daemons.
const Dir = "/usr/lib/frr"

// Available says why FRR cannot run here, or "" when it can.
func Available() string {
	for _, f := range []string{filepath.Join(Dir, "zebra"), filepath.Join(Dir, "bgpd")} {
		if _, err := os.Stat(f); err != nil {
			return "needs FRR (apt-get install frr): " + err.Error()
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return "needs vtysh (apt-get install frr)"
	}
	if _, err := user.Lookup("frr"); err != nil {
		return "needs the frr user the frr package creates: " + err.Error()
	}
	return ""
}

// Neighbor is a BGP neighbor of the router (a node).
type Neighbor struct {
	Address  netip.Addr
	ASN      uint32
	Password string
}

// Config is the router's BGP configuration.
type Config struct {
	ASN      uint32
	RouterID netip.Addr
	// Address6 is the router's IPv6 address, the source of its sessions
	// with IPv6 neighbors (optional).
	Address6 netip.Addr
	// Neighbors are the nodes; they connect to the router (it listens on
	// 179 in its namespace).
	Neighbors []Neighbor
	// HoldTime and Keepalive in seconds (default 9 and 3).
	HoldTime, Keepalive int
	// GracefulRestart makes the router a graceful restart helper.
	GracefulRestart bool
	// BFD runs bfdd beside bgpd (neighbors get BFD with Configure).
	BFD bool
	// Trace logs, with microsecond timestamps, every prefix bgpd
	// receives and every route it sends zebra (bench-bgp's breakdown of
	// an announcement's latency; see ParseTrace).
	Trace bool
}

// Router is FRR running in a host.
type Router struct {
	Host  *netlab.Host
	dir   string
	procs []*testenv.Process
}

var bgpdConf = template.Must(template.New("bgpd").Parse(`frr defaults datacenter
hostname router
log timestamp precision 3
log stdout debugging
{{- if .Trace}}
log timestamp precision 6
debug bgp updates in
debug bgp zebra
{{- end}}
!
router bgp {{.ASN}}
 bgp router-id {{.RouterID}}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
{{- if .GracefulRestart}}
 bgp graceful-restart
{{- end}}
{{- range .Neighbors}}
 neighbor {{.Address}} remote-as {{.ASN}}
 neighbor {{.Address}} timers {{$.Keepalive}} {{$.HoldTime}}
 neighbor {{.Address}} timers connect 1
{{- if .Address.Is4}}
 neighbor {{.Address}} update-source {{$.RouterID}}
{{- else if $.Address6.IsValid}}
 neighbor {{.Address}} update-source {{$.Address6}}
{{- end}}
{{- if .Password}}
 neighbor {{.Address}} password {{.Password}}
{{- end}}
{{- end}}
 !
 address-family ipv4 unicast
  maximum-paths 64
{{- range .Neighbors}}{{if .Address.Is4}}
  neighbor {{.Address}} activate
{{- end}}{{end}}
 exit-address-family
 !
 address-family ipv6 unicast
  maximum-paths 64
{{- range .Neighbors}}{{if .Address.Is6}}
  neighbor {{.Address}} activate
{{- end}}{{end}}
 exit-address-family
!
`))

// Start writes the configuration and runs zebra and bgpd in h; logs go to
// logDir. Close stops them.
func Start(h *netlab.Host, cfg Config, logDir string) (*Router, error) {
	if cfg.HoldTime == 0 {
		cfg.HoldTime, cfg.Keepalive = 9, 3
	}
	dir, err := os.MkdirTemp("", "portico-frr-")
	if err != nil {
		return nil, err
	}
	r := &Router{Host: h, dir: dir}
	var conf strings.Builder
	if err := bgpdConf.Execute(&conf, cfg); err != nil {
		return nil, err
	}
	files := map[string]string{
		"zebra.conf": "hostname router\nlog stdout debugging\nlog timestamp precision 3\n",
		"bgpd.conf":  conf.String(),
	}
	if cfg.BFD {
		files["bfdd.conf"] = "hostname router\nlog stdout debugging\nlog timestamp precision 3\ndebug bfd peer\ndebug bfd network\n"
	}
	// The daemons drop root for the frr user (running them as root needs
	// root in the frrvty group): the directory and files are theirs.
	u, err := user.Lookup("frr")
	if err != nil {
		return nil, fmt.Errorf("FRR's user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, err
		}
		if err := os.Chown(filepath.Join(dir, name), uid, gid); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := netlab.Run("ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return nil, err
	}
	common := func(daemon string) []string {
		return []string{"-f", filepath.Join(dir, daemon+".conf"), "-i", filepath.Join(dir, daemon+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-u", "frr", "-g", "frr", "-P", "0", "--log", "stdout"}
	}
	daemons := []struct {
		name string
		args []string
	}{
		{"zebra", common("zebra")},
	}
	if cfg.BFD {
		daemons = append(daemons, struct {
			name string
			args []string
		}{"bfdd", append(common("bfdd"), "--bfdctl", filepath.Join(dir, "bfdd.sock"))})
	}
	daemons = append(daemons, struct {
		name string
		args []string
	}{"bgpd", append(common("bgpd"), "-p", "179")})
	for _, d := range daemons {
		p, err := testenv.StartProcess("frr "+d.name, h.Command(filepath.Join(Dir, d.name), d.args...),
			testenv.ProcessOptions{Log: filepath.Join(logDir, "frr-"+d.name+".log")})
		if err != nil {
			_ = r.Close()
			return nil, err
		}
		r.procs = append(r.procs, p)
		if d.name == "zebra" {
			// bgpd connects to zebra's socket at start.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := os.Stat(filepath.Join(dir, "zserv.api")); err == nil {
					break
				}
				if time.Now().After(deadline) {
					_ = r.Close()
					return nil, errors.New("zebra did not create its socket within 10s")
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// Ready when vtysh reaches every daemon.
	checks := []string{"show bgp summary"}
	if cfg.BFD {
		checks = append(checks, "show bfd peers")
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range checks {
		for {
			_, err := r.Vtysh(c)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = r.Close()
				return nil, fmt.Errorf("FRR not ready: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return r, nil
}

// Vtysh runs one vtysh command against the router's daemons.
func (r *Router) Vtysh(cmd string) (string, error) {
	out, err := r.Host.Command("vtysh", "--vty_socket", r.dir, "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q: %w: %s", cmd, err, out)
	}
	return string(out), nil
}

// Configure runs configuration commands (as in "configure terminal").
func (r *Router) Configure(cmds ...string) error {
	args := []string{"--vty_socket", r.dir, "-c", "configure terminal"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := r.Host.Command("vtysh", args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		return fmt.Errorf("configuring %q: %v: %s", cmds, err, out)
	}
	return nil
}

// Peer is a neighbor's row of "show bgp summary json".
type Peer struct {
	State        string `json:"state"`
	PfxRcd       int    `json:"pfxRcd"`
	RemoteAS     uint32 `json:"remoteAs"`
	PeerUptimeMs int64  `json:"peerUptimeMsec"`
}

// Summary returns the IPv4 (or IPv6) unicast neighbors by address.
func (r *Router) Summary(v6 bool) (map[string]Peer, error) {
	fam := "ipv4"
	if v6 {
		fam = "ipv6"
	}
	out, err := r.Vtysh("show bgp " + fam + " unicast summary json")
	if err != nil {
		return nil, err
	}
	var s struct {
		Peers map[string]Peer `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("parsing %q: %w", out, err)
	}
	return s.Peers, nil
}

// NextHops returns the next hops of the kernel route to prefix in the
// router's namespace (ip route), sorted; none when there is no route.
func (r *Router) NextHops(prefix netip.Prefix) ([]netip.Addr, error) {
	out, err := r.Host.IP("-j", "route", "show", "exact", prefix.String())
	if prefix.Addr().Is6() {
		out, err = r.Host.IP("-6", "-j", "route", "show", "exact", prefix.String())
	}
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("parsing %q: %w", out, err)
	}
	var hops []netip.Addr
	for _, rt := range routes {
		gws := []string{rt.Gateway}
		for _, nh := range rt.Nexthops {
			gws = append(gws, nh.Gateway)
		}
		for _, g := range gws {
			if a, err := netip.ParseAddr(g); err == nil {
				hops = append(hops, a)
			}
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops, nil
}

// Err reports a daemon that crashed or exited on its own.
func (r *Router) Err() error {
	var errs []error
	for _, p := range r.procs {
		if err := p.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, p.Tail(20)))
		}
	}
	return errors.Join(errs...)
}

// Close stops the daemons and removes their files.
func (r *Router) Close() error {
	err := r.Err()
	for i := len(r.procs) - 1; i >= 0; i-- {
		_ = r.procs[i].Stop()
	}
	_ = os.RemoveAll(r.dir)
	return err
}

// BFDPeer is a row of "show bfd peers json" (intervals in milliseconds).
type BFDPeer struct {
	Peer                   string `json:"peer"`
	Local                  string `json:"local"`
	Status                 string `json:"status"`
	ReceiveInterval        int    `json:"receive-interval"`
	TransmitInterval       int    `json:"transmit-interval"`
	DetectMultiplier       int    `json:"detect-multiplier"`
	RemoteReceiveInterval  int    `json:"remote-receive-interval"`
	RemoteTransmitInterval int    `json:"remote-transmit-interval"`
	RemoteDetectMultiplier int    `json:"remote-detect-multiplier"`
}

// DetectionTime is how long the router waits without a packet from the
// peer before it declares the session down (RFC 5880 6.8.4): the peer's
// detect multiplier times the greater of the router's required receive
// interval and the peer's desired transmit interval.
func (p BFDPeer) DetectionTime() time.Duration {
	return time.Duration(p.RemoteDetectMultiplier) * time.Duration(max(p.ReceiveInterval, p.RemoteTransmitInterval)) * time.Millisecond
}

// BFDPeers returns the router's BFD sessions by peer address.
func (r *Router) BFDPeers() (map[netip.Addr]BFDPeer, error) {
	out, err := r.Vtysh("show bfd peers json")
	if err != nil {
		return nil, err
	}
	var peers []BFDPeer
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		return nil, fmt.Errorf("parsing %q: %w", out, err)
	}
	m := map[netip.Addr]BFDPeer{}
	for _, p := range peers {
		if a, err := netip.ParseAddr(p.Peer); err == nil {
			m[a] = p
		}
	}
	return m, nil
}
