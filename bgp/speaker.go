package bgp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apipb "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-lb/portico/bfd"
)

// Session states beside the BGP FSM's (RFC 4271 8.2.2).
const (
	StateEstablished = "Established"
	// StateDisabled: the forwarder does not open the session (bad input,
	// PeerPlan.Error).
	StateDisabled = "Disabled"
)

// ConnectRetry is how often a speaker tries to reach a router that is down.
var ConnectRetry = 5 * time.Second

// SessionState is what a speaker knows of one session.
type SessionState struct {
	State            string
	EstablishedSince time.Time
	// Advertised is the number of prefixes the router has been sent
	// (0 unless Established).
	Advertised int
	LastError  string
	// BFD is the BFD session's state ("" when the peer has no BFD).
	BFD string
}

// SpeakerConfig configures a Speaker.
type SpeakerConfig struct {
	// RouterID is the node's IPv4 address; for a node without one a
	// stable ID is derived from NodeName.
	RouterID netip.Addr
	NodeName string
	// LocalAddresses are the node's addresses sessions are opened from,
	// one per family (optional; the kernel's choice otherwise).
	LocalAddresses []netip.Addr
	Log            logr.Logger
	// BFDHelper runs BFD in a child process (bfd.Helper: this executable
	// must serve bfd.HelperArg), so its timers do not depend on how busy the
	// forwarder is; false runs it in this process.
	BFDHelper bool
}

// Speaker holds this node's BGP sessions, one GoBGP server per BGPPeer, so
// each peer is sent exactly the prefixes its plan lists. It is safe for
// concurrent use.
type Speaker struct {
	cfg      SpeakerConfig
	routerID string

	mu       sync.Mutex
	sessions map[string]*session
	// idle servers are stopped and reused: a GoBGP server's Serve
	// goroutine never returns.
	idle []*server.BgpServer
	// bfd runs the BFD sessions of peers that ask for them.
	bfd bfd.Runner
}

type session struct {
	peer  Peer
	srv   *server.BgpServer
	log   *logAdapter
	paths map[netip.Prefix]advertised
}

type advertised struct {
	route Route
	uuid  []byte
}

// NewSpeaker returns a speaker with no sessions.
func NewSpeaker(cfg SpeakerConfig) *Speaker {
	id := cfg.RouterID
	if !id.Is4() {
		h := sha256.Sum256([]byte(cfg.NodeName))
		id = netip.AddrFrom4([4]byte{h[0], h[1], h[2], h[3]})
	}
	sp := &Speaker{cfg: cfg, routerID: id.String(), sessions: map[string]*session{}}
	if cfg.BFDHelper {
		sp.bfd = &bfd.Helper{Locals: cfg.LocalAddresses, Log: cfg.Log.WithName("bfd")}
	} else {
		sp.bfd = &bfd.Manager{Locals: cfg.LocalAddresses, Log: cfg.Log.WithName("bfd")}
	}
	return sp
}

// RunBFD runs the BFD sessions until ctx ends (then they tell their peers
// AdminDown).
func (s *Speaker) RunBFD(ctx context.Context) error {
	return s.bfd.Run(ctx)
}

// Apply makes the sessions and their advertised prefixes what plans say:
// sessions of peers no longer planned (or planned with an Error, or whose
// settings changed) are closed, new ones opened, and each session's prefixes
// added and withdrawn by difference. Errors of one peer do not stop the
// others.
func (s *Speaker) Apply(ctx context.Context, plans map[string]PeerPlan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, ss := range s.sessions {
		pp, ok := plans[name]
		if !ok || pp.Error != "" || pp.Peer != ss.peer {
			s.cfg.Log.Info("Closing BGP session", "BGPPeer", name, "peer", ss.peer.Address.String())
			s.close(ctx, ss, false)
			delete(s.sessions, name)
		}
	}
	for _, name := range sortedKeys(plans) {
		pp := plans[name]
		if pp.Error != "" {
			continue
		}
		ss := s.sessions[name]
		if ss == nil {
			var err error
			if ss, err = s.open(ctx, pp.Peer); err != nil {
				errs = append(errs, fmt.Errorf("opening BGP session with %s (%s): %w", name, pp.Peer.Address, err))
				continue
			}
			s.sessions[name] = ss
		}
		if err := ss.sync(ctx, pp.Routes); err != nil {
			errs = append(errs, fmt.Errorf("advertising to %s (%s): %w", name, pp.Peer.Address, err))
		}
	}
	return errors.Join(errs...)
}

// Patch applies a change of routes (Incremental's Delta) to the open
// sessions: only the prefixes named are added, replaced or withdrawn. Peers
// without an open session are skipped (Apply opens sessions, with their
// whole plan).
func (s *Speaker) Patch(ctx context.Context, d Delta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, name := range sortedKeys(d) {
		ss := s.sessions[name]
		if ss == nil {
			continue
		}
		ps := d[name]
		for _, p := range slices.SortedFunc(maps.Keys(ps), comparePrefix) {
			if err := ss.set(ctx, p, ps[p]); err != nil {
				errs = append(errs, fmt.Errorf("advertising to %s (%s): %w", name, ss.peer.Address, err))
			}
		}
	}
	return errors.Join(errs...)
}

// set makes the session advertise r for prefix p (r nil: withdraw it).
func (ss *session) set(ctx context.Context, p netip.Prefix, r *Route) error {
	a, ok := ss.paths[p]
	if ok && r != nil && sameRoute(*r, a.route) {
		return nil
	}
	if ok {
		if err := ss.srv.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: family(p.Addr()), Uuid: a.uuid}); err != nil {
			return fmt.Errorf("withdrawing %s: %w", p, err)
		}
		delete(ss.paths, p)
	}
	if r == nil {
		return nil
	}
	path, err := toPath(*r)
	if err != nil {
		return err
	}
	resp, err := ss.srv.AddPath(ctx, &apipb.AddPathRequest{TableType: apipb.TableType_GLOBAL, Path: path})
	if err != nil {
		return fmt.Errorf("advertising %s: %w", p, err)
	}
	ss.paths[p] = advertised{route: *r, uuid: resp.Uuid}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if prefixLess(a, b) {
		return -1
	}
	if prefixLess(b, a) {
		return 1
	}
	return 0
}

func (s *Speaker) open(ctx context.Context, p Peer) (*session, error) {
	la := &logAdapter{log: s.cfg.Log.WithName("gobgp").WithValues("BGPPeer", p.Name)}
	var srv *server.BgpServer
	if n := len(s.idle); n > 0 {
		srv, s.idle = s.idle[n-1], s.idle[:n-1]
	} else {
		srv = server.NewBgpServer(server.LoggerOption(la))
		go srv.Serve()
	}
	ss := &session{peer: p, srv: srv, log: la, paths: map[netip.Prefix]advertised{}}
	// ListenPort -1: the speaker only connects out; routers reach no
	// listener on the node.
	if err := srv.StartBgp(ctx, &apipb.StartBgpRequest{Global: &apipb.Global{Asn: p.MyASN, RouterId: s.routerID, ListenPort: -1}}); err != nil {
		s.idle = append(s.idle, srv)
		return nil, err
	}
	fam := family(p.Address)
	peer := &apipb.Peer{
		Conf: &apipb.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.PeerASN, LocalAsn: p.MyASN, AuthPassword: p.Password,
			Description: "portico BGPPeer " + p.Name},
		Timers: &apipb.Timers{Config: &apipb.TimersConfig{
			HoldTime: uint64(p.HoldTime / time.Second), KeepaliveInterval: uint64(p.KeepaliveTime / time.Second),
			ConnectRetry: uint64(ConnectRetry / time.Second), IdleHoldTimeAfterReset: uint64(ConnectRetry / time.Second)}},
		Transport: &apipb.Transport{RemotePort: uint32(p.Port)},
		AfiSafis:  []*apipb.AfiSafi{{Config: &apipb.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	for _, a := range s.cfg.LocalAddresses {
		if a.Is4() == p.Address.Is4() {
			peer.Transport.LocalAddress = a.String()
		}
	}
	if p.EBGPMultiHop {
		peer.EbgpMultihop = &apipb.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	if p.GracefulRestart {
		peer.GracefulRestart = &apipb.GracefulRestart{Enabled: true, RestartTime: uint32(p.RestartTime / time.Second)}
		peer.AfiSafis[0].MpGracefulRestart = &apipb.MpGracefulRestart{Config: &apipb.MpGracefulRestartConfig{Enabled: true}}
	}
	s.cfg.Log.Info("Opening BGP session", "BGPPeer", p.Name, "peer", p.Address.String(), "peerASN", p.PeerASN, "myASN", p.MyASN,
		"password", p.Password != "", "gracefulRestart", p.GracefulRestart)
	if err := srv.AddPeer(ctx, &apipb.AddPeerRequest{Peer: peer}); err != nil {
		_ = srv.StopBgp(ctx, &apipb.StopBgpRequest{})
		s.idle = append(s.idle, srv)
		return nil, err
	}
	if p.BFD.DetectMult != 0 {
		if err := s.bfd.Add(p.Address, p.BFD); err != nil {
			la.remember("BFD: "+err.Error(), nil)
		}
	}
	return ss, nil
}

// close ends a session. Unless keep, its prefixes are withdrawn first; with
// keep (graceful restart on shutdown) the server is left to the process's
// exit, so the router sees the TCP session drop without a NOTIFICATION and
// keeps the routes for the restart time.
func (s *Speaker) close(ctx context.Context, ss *session, keep bool) {
	if ss.peer.BFD.DetectMult != 0 {
		// AdminDown: the router does not take the end for a failure,
		// which would flush the routes graceful restart keeps.
		s.bfd.Remove(ss.peer.Address)
	}
	if keep {
		return
	}
	ss.withdrawAll(ctx)
	if err := ss.srv.StopBgp(ctx, &apipb.StopBgpRequest{}); err != nil {
		s.cfg.Log.Error(err, "Stopping BGP session", "BGPPeer", ss.peer.Name)
	}
	s.idle = append(s.idle, ss.srv)
}

// Close withdraws every prefix and closes every session, except those of
// peers with graceful restart, whose routes the routers keep until the
// forwarder is back (or the restart time ends).
func (s *Speaker) Close(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ss := range s.sessions {
		s.cfg.Log.Info("Closing BGP session", "BGPPeer", name, "withdraw", !ss.peer.GracefulRestart)
		s.close(ctx, ss, ss.peer.GracefulRestart)
		delete(s.sessions, name)
	}
}

// Sessions reports the state of every open session, by BGPPeer name. It
// asks GoBGP without holding the speaker's lock, so Patch and Apply (the
// routes) never wait for a status query.
func (s *Speaker) Sessions(ctx context.Context) map[string]SessionState {
	type open struct {
		ss         *session
		advertised int
	}
	s.mu.Lock()
	sessions := make(map[string]open, len(s.sessions))
	for name, ss := range s.sessions {
		sessions[name] = open{ss: ss, advertised: len(ss.paths)}
	}
	s.mu.Unlock()
	out := map[string]SessionState{}
	for name, o := range sessions {
		ss := o.ss
		st := SessionState{State: "Idle", LastError: ss.log.lastError()}
		_ = ss.srv.ListPeer(ctx, &apipb.ListPeerRequest{Address: ss.peer.Address.String()}, func(p *apipb.Peer) {
			if p.State != nil {
				st.State = fsmState(p.State.SessionState)
			}
			if st.State == StateEstablished && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
				st.EstablishedSince = p.Timers.State.Uptime.AsTime()
			}
		})
		if st.State == StateEstablished {
			st.Advertised = o.advertised
		}
		if ss.peer.BFD.DetectMult != 0 {
			b, _ := s.bfd.State(ss.peer.Address)
			st.BFD = b.String()
		}
		out[name] = st
	}
	return out
}

func fsmState(s apipb.PeerState_SessionState) string {
	switch s {
	case apipb.PeerState_IDLE:
		return "Idle"
	case apipb.PeerState_CONNECT:
		return "Connect"
	case apipb.PeerState_ACTIVE:
		return "Active"
	case apipb.PeerState_OPENSENT:
		return "OpenSent"
	case apipb.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case apipb.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return "Unknown"
}

// sync adds and withdraws prefixes so the session advertises routes.
func (ss *session) sync(ctx context.Context, routes []Route) error {
	want := map[netip.Prefix]Route{}
	for _, r := range routes {
		want[r.Prefix] = r
	}
	var errs []error
	for p, a := range ss.paths {
		if r, ok := want[p]; !ok || !sameRoute(r, a.route) {
			if err := ss.srv.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: family(p.Addr()), Uuid: a.uuid}); err != nil {
				errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
				continue
			}
			delete(ss.paths, p)
		}
	}
	for _, p := range slices.SortedFunc(func(yield func(netip.Prefix) bool) {
		for p := range want {
			if !yield(p) {
				return
			}
		}
	}, func(a, b netip.Prefix) int {
		if prefixLess(a, b) {
			return -1
		}
		if prefixLess(b, a) {
			return 1
		}
		return 0
	}) {
		if _, ok := ss.paths[p]; ok {
			continue
		}
		path, err := toPath(want[p])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := ss.srv.AddPath(ctx, &apipb.AddPathRequest{TableType: apipb.TableType_GLOBAL, Path: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("advertising %s: %w", p, err))
			continue
		}
		ss.paths[p] = advertised{route: want[p], uuid: resp.Uuid}
	}
	return errors.Join(errs...)
}

func (ss *session) withdrawAll(ctx context.Context) {
	for p, a := range ss.paths {
		_ = ss.srv.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: family(p.Addr()), Uuid: a.uuid})
		delete(ss.paths, p)
	}
}

func sameRoute(a, b Route) bool {
	return a.Prefix == b.Prefix && a.LocalPref == b.LocalPref && slices.Equal(a.Communities, b.Communities) &&
		slices.Equal(a.LargeCommunities, b.LargeCommunities)
}

func family(a netip.Addr) *apipb.Family {
	if a.Is4() {
		return &apipb.Family{Afi: apipb.Family_AFI_IP, Safi: apipb.Family_SAFI_UNICAST}
	}
	return &apipb.Family{Afi: apipb.Family_AFI_IP6, Safi: apipb.Family_SAFI_UNICAST}
}

// toPath builds GoBGP's path for a route. The next hop is left unspecified:
// GoBGP sends the session's local address, the node's.
func toPath(r Route) (*apipb.Path, error) {
	nlri, err := anypb.New(&apipb.IPAddressPrefix{Prefix: r.Prefix.Addr().String(), PrefixLen: uint32(r.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{&apipb.OriginAttribute{Origin: 0}} // IGP
	if r.Prefix.Addr().Is4() {
		attrs = append(attrs, &apipb.NextHopAttribute{NextHop: "0.0.0.0"})
	} else {
		attrs = append(attrs, &apipb.MpReachNLRIAttribute{Family: family(r.Prefix.Addr()), NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
	}
	if len(r.Communities) > 0 {
		c := &apipb.CommunitiesAttribute{}
		for _, s := range r.Communities {
			v, err := ParseCommunity(s)
			if err != nil {
				return nil, err
			}
			c.Communities = append(c.Communities, v)
		}
		attrs = append(attrs, c)
	}
	if len(r.LargeCommunities) > 0 {
		c := &apipb.LargeCommunitiesAttribute{}
		for _, s := range r.LargeCommunities {
			v, err := ParseLargeCommunity(s)
			if err != nil {
				return nil, err
			}
			c.Communities = append(c.Communities, &apipb.LargeCommunity{GlobalAdmin: v[0], LocalData1: v[1], LocalData2: v[2]})
		}
		attrs = append(attrs, c)
	}
	if r.LocalPref != 0 {
		attrs = append(attrs, &apipb.LocalPrefAttribute{LocalPref: r.LocalPref})
	}
	path := &apipb.Path{Nlri: nlri, Family: family(r.Prefix.Addr())}
	for _, a := range attrs {
		pa, err := anypb.New(a)
		if err != nil {
			return nil, err
		}
		path.Pattrs = append(path.Pattrs, pa)
	}
	return path, nil
}

// logAdapter sends GoBGP's log to logr and remembers its last warning or
// error as the session's last error. GoBGP's Fatal and Panic are logged as
// errors: a library must not end the forwarder.
type logAdapter struct {
	log   logr.Logger
	mu    sync.Mutex
	last  string
	level gobgplog.LogLevel
}

var _ gobgplog.Logger = (*logAdapter)(nil)

func (l *logAdapter) kv(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range f {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, k, fmt.Sprint(f[k]))
	}
	return out
}

func (l *logAdapter) remember(msg string, f gobgplog.Fields) {
	if e, ok := f["Error"]; ok {
		msg += ": " + fmt.Sprint(e)
	} else if e, ok := f["Err"]; ok {
		msg += ": " + fmt.Sprint(e)
	}
	l.mu.Lock()
	l.last = msg
	l.mu.Unlock()
}

func (l *logAdapter) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) { l.Error(msg, f) }
func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) { l.Error(msg, f) }
func (l *logAdapter) Error(msg string, f gobgplog.Fields) {
	l.remember(msg, f)
	l.log.Info("GoBGP error: "+msg, l.kv(f)...)
}
func (l *logAdapter) Warn(msg string, f gobgplog.Fields) {
	l.remember(msg, f)
	l.log.V(1).Info(msg, l.kv(f)...)
}
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.log.V(2).Info(msg, l.kv(f)...) }
func (l *logAdapter) Debug(msg string, f gobgplog.Fields) { l.log.V(5).Info(msg, l.kv(f)...) }
func (l *logAdapter) SetLevel(level gobgplog.LogLevel)    { l.level = level }
func (l *logAdapter) GetLevel() gobgplog.LogLevel {
	// GoBGP skips building debug messages below this level.
	return gobgplog.InfoLevel
}
