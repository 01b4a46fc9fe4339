package announce

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Address is one load-balancer address to announce and who may carry it.
type Address struct {
	IP netip.Addr
	// Service is namespace/name, for status and logs.
	Service string
	// LocalOnly is set for externalTrafficPolicy Local: only nodes in
	// EndpointNodes are eligible.
	LocalOnly     bool
	EndpointNodes []string
}

// Inputs are what the cluster (or static flags) says.
type Inputs struct {
	// ReadyNodes are the nodes whose Node object is Ready.
	ReadyNodes []string
	Addresses  []Address
	// Standby, when set, says why this node may not announce now (it is
	// not a member yet): it stays on the heartbeat, counting towards its
	// peers' quorum, but is eligible for no address.
	Standby string
}

// Speaker is what the Announcer drives: the Responder, or a fake in tests.
type Speaker interface {
	Set(addrs []netip.Addr)
	// Reannounce repeats the gratuitous announcements of addrs.
	Reannounce(addrs []netip.Addr)
	// Ready returns why the speaker cannot answer now (its interface is
	// down or missing), nil when it can.
	Ready() error
}

// AnnouncerConfig wires an Announcer.
type AnnouncerConfig struct {
	Self    string
	Members *Members
	Speaker Speaker
	// WarmUp delays the first announcement until peers' claims have been
	// heard, so a starting forwarder never grabs an address another node
	// holds. Default: the members' DeadAfter.
	WarmUp time.Duration
}

// Announcer recomputes, whenever inputs or membership change, which
// addresses this node announces and who announces every address.
type Announcer struct {
	cfg     AnnouncerConfig
	started time.Time

	mu     sync.Mutex
	inputs Inputs
	// Hold-off: after start and whenever quorum comes back, this node
	// announces nothing for WarmUp, until it has heard every peer's claims.
	quorum   bool
	regained time.Time
	// contested are addresses this node holds that another node claimed
	// at the last recomputation.
	contested []netip.Addr
	owners    map[netip.Addr]string
	mine      []netip.Addr
	// waiting are addresses this node should take over but another node
	// still claims, with when the wait began (break before make).
	waiting map[netip.Addr]time.Time
	standby string
	kick    chan struct{}
	changed chan struct{}
}

// NewAnnouncer returns an Announcer; Run starts it.
func NewAnnouncer(cfg AnnouncerConfig) *Announcer {
	if cfg.WarmUp == 0 {
		cfg.WarmUp = cfg.Members.Config().DeadAfter
	}
	return &Announcer{cfg: cfg, owners: map[netip.Addr]string{}, kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

// SetInputs replaces the inputs and triggers a recomputation.
func (a *Announcer) SetInputs(in Inputs) {
	a.mu.Lock()
	a.inputs = in
	a.mu.Unlock()
	ips := make([]netip.Addr, 0, len(in.Addresses))
	for _, ad := range in.Addresses {
		ips = append(ips, ad.IP)
	}
	a.cfg.Members.SetAddresses(ips)
	signal(a.kick)
}

// Kick asks for a recomputation, e.g. when the speaker's readiness changed.
func (a *Announcer) Kick() { signal(a.kick) }

// Standby returns why this node announces nothing now ("" when it may).
func (a *Announcer) Standby() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.standby
}

// Owners returns, for every address, the node this forwarder believes
// announces it ("" when none is eligible).
func (a *Announcer) Owners() map[netip.Addr]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.owners)
}

// OwnersChanged signals (coalesced) when Owners changed.
func (a *Announcer) OwnersChanged() <-chan struct{} { return a.changed }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run recomputes on every change until ctx ends, then stops announcing.
func (a *Announcer) Run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("announcer")
	a.started = time.Now()
	a.regained, a.quorum = a.started, true
	warm := time.NewTimer(a.cfg.WarmUp)
	defer warm.Stop()
	// A periodic pass bounds the damage of any missed signal.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.cfg.Speaker.Set(nil)
			a.cfg.Members.SetClaims(nil)
			return nil
		case <-a.kick:
		case <-a.cfg.Members.Changed():
		case <-warm.C:
		case <-tick.C:
		}
		a.recompute(log)
	}
}

func (a *Announcer) recompute(log logr.Logger) {
	view := a.cfg.Members.View()
	now := time.Now()
	a.mu.Lock()
	in := a.inputs
	prevMine := a.mine
	announced := a.mine
	if !a.quorum && view.Quorum {
		a.regained = now
		time.AfterFunc(a.cfg.WarmUp, func() { signal(a.kick) })
	}
	a.quorum = view.Quorum
	holdOff := now.Sub(a.regained) < a.cfg.WarmUp
	a.mu.Unlock()

	standby := in.Standby
	if standby == "" {
		if err := a.cfg.Speaker.Ready(); err != nil {
			standby = err.Error()
		}
	}
	if standby != "" {
		// This node can answer nothing: it is not a candidate, in its own
		// view as in its peers' (the heartbeat says standby).
		view.Alive = slices.DeleteFunc(slices.Clone(view.Alive), func(n string) bool { return n == a.cfg.Self })
		prevMine = nil
	}
	a.cfg.Members.SetStandby(standby != "")

	owners, mine := Assign(AssignInput{
		Self: a.cfg.Self, Inputs: in, View: view, Mine: prevMine,
	})
	if !view.Quorum || holdOff {
		// Without a majority, or coming back, a node must not answer on
		// partial information: it may not have heard the current holder.
		mine = nil
	}
	mine = a.breakBeforeMake(mine, prevMine, view, now)
	// Another node claims an address this node keeps (two claimants right
	// after a partition heals): it yields within a heartbeat, but clients
	// may have followed its gratuitous ARP, so announce again.
	var contested []netip.Addr
	for _, ip := range mine {
		for _, claims := range view.Claims {
			if slices.Contains(claims, ip) {
				contested = append(contested, ip)
				break
			}
		}
	}
	// Claims go out before the speaker starts answering, so peers learn of
	// a takeover as early as possible.
	a.cfg.Members.SetClaims(mine)
	a.cfg.Speaker.Set(mine)
	a.mu.Lock()
	var renew []netip.Addr
	for _, ip := range contested {
		if !slices.Contains(a.contested, ip) {
			renew = append(renew, ip)
		}
	}
	a.contested = contested
	prevStandby := a.standby
	a.standby = standby
	a.mu.Unlock()
	if standby != prevStandby {
		if standby != "" {
			log.Info("Standing by: announcing nothing", "reason", standby)
		} else {
			log.Info("Ready to announce")
		}
	}
	if len(renew) > 0 {
		log.V(1).Info("Announcing again after a competing claim", "addresses", renew)
		a.cfg.Speaker.Reannounce(renew)
	}

	for _, ip := range mine {
		if !slices.Contains(announced, ip) {
			metricTakeovers.Inc()
		}
	}
	for _, ip := range announced {
		if !slices.Contains(mine, ip) {
			metricReleases.Inc()
		}
	}
	metricAnnounced.Set(float64(len(mine)))

	a.mu.Lock()
	// What this node actually announces is part of the published state too:
	// warm-up and quorum change it without changing the owners.
	changed := !maps.Equal(a.owners, owners) || !slices.Equal(a.mine, mine)
	a.owners, a.mine = owners, mine
	a.mu.Unlock()
	if !slices.Equal(announced, mine) {
		log.V(1).Info("Announcing", "addresses", mine, "alive", view.Alive, "quorum", view.Quorum)
	}
	if changed {
		signal(a.changed)
	}
}

// AssignInput is everything the assignment depends on.
type AssignInput struct {
	Self   string
	Inputs Inputs
	View   View
	// Mine are the addresses Self announces now.
	Mine []netip.Addr
}

// Assign is the pure decision every forwarder runs: for each address, the
// eligible nodes are Ready, alive on the heartbeat and serve the Services on
// it (Eligible); Decide picks one. Entries of Services that share an address
// are decided together, so an address has one owner however many Services
// carry it. It returns the owner of every address and the addresses Self
// should announce, sorted.
func Assign(in AssignInput) (owners map[netip.Addr]string, mine []netip.Addr) {
	owners = map[netip.Addr]string{}
	var live []string
	for _, n := range in.View.Alive {
		if slices.Contains(in.Inputs.ReadyNodes, n) {
			live = append(live, n)
		}
	}
	slices.Sort(live)
	live = slices.Compact(live)
	byIP := map[netip.Addr][]Address{}
	var ips []netip.Addr
	for _, addr := range in.Inputs.Addresses {
		if _, seen := byIP[addr.IP]; !seen {
			ips = append(ips, addr.IP)
		}
		byIP[addr.IP] = append(byIP[addr.IP], addr)
	}
	for _, ip := range ips {
		eligible := Eligible(live, byIP[ip])
		var claimants []string
		for node, claims := range in.View.Claims {
			if slices.Contains(claims, ip) {
				claimants = append(claimants, node)
			}
		}
		if slices.Contains(in.Mine, ip) {
			claimants = append(claimants, in.Self)
		}
		owner := Decide(ip, eligible, claimants)
		owners[ip] = owner
		if owner == in.Self {
			mine = append(mine, ip)
		}
	}
	slices.SortFunc(mine, netip.Addr.Compare)
	return owners, mine
}

// Eligible returns the nodes among live (sorted) that may announce an
// address carried by sharers, one entry per Service on it:
//
//   - no sharer is LocalOnly: every live node;
//   - otherwise the live nodes that hold endpoints of the most LocalOnly
//     sharers. When their endpoints agree (the allocator lets Local Services
//     share only with the same pod selector) these are the nodes serving
//     all of them. A live node serving none of them is eligible only when
//     some sharer has externalTrafficPolicy Cluster (any node serves it) and
//     no node serves a Local sharer; with Local sharers only, no endpoint
//     means no announcer, as for a single Service.
//
// The result depends only on the inputs, so every forwarder computes the
// same set and Decide gives the address exactly one owner.
func Eligible(live []string, sharers []Address) []string {
	anyCluster := false
	score := map[string]int{}
	for _, s := range sharers {
		if !s.LocalOnly {
			anyCluster = true
			continue
		}
		for _, n := range slices.Compact(slices.Sorted(slices.Values(s.EndpointNodes))) {
			score[n]++
		}
	}
	best := 0
	for _, n := range live {
		best = max(best, score[n])
	}
	if best == 0 {
		if anyCluster {
			return slices.Clone(live)
		}
		return nil
	}
	var out []string
	for _, n := range live {
		if score[n] == best {
			out = append(out, n)
		}
	}
	return out
}

// Mine returns the addresses this node announces now, sorted.
func (a *Announcer) Mine() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mine)
}

// breakBeforeMake holds back a takeover while another node still claims the
// address: an owner that lost it (its Node left Ready, it lost its endpoint)
// releases it as soon as it learns of the change, within a heartbeat, but
// its peers may learn first. Waiting for its claim to lapse keeps two nodes
// from answering at once. The wait is bounded by DeadAfter, so a node that
// keeps claiming on stale information delays failover by at most that; an
// address nobody else claims is taken at once.
func (a *Announcer) breakBeforeMake(mine, prev []netip.Addr, view View, now time.Time) []netip.Addr {
	bound := a.cfg.Members.Config().DeadAfter
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting == nil {
		a.waiting = map[netip.Addr]time.Time{}
	}
	claimed := func(ip netip.Addr) bool {
		for node, claims := range view.Claims {
			if node != a.cfg.Self && slices.Contains(claims, ip) {
				return true
			}
		}
		for _, claims := range view.Departing {
			if slices.Contains(claims, ip) {
				return true
			}
		}
		return false
	}
	var out []netip.Addr
	waiting := map[netip.Addr]time.Time{}
	for _, ip := range mine {
		if slices.Contains(prev, ip) || !claimed(ip) {
			out = append(out, ip)
			continue
		}
		since, ok := a.waiting[ip]
		if !ok {
			since = now
			time.AfterFunc(bound, func() { signal(a.kick) })
		}
		if now.Sub(since) >= bound {
			out = append(out, ip) // the other claimant is stale: take over
			continue
		}
		waiting[ip] = since
	}
	a.waiting = waiting
	return out
}
