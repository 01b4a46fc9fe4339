package dataplane

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portico-lb/portico/e2e/netlab"
	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// recorder is knftables' fake that also keeps the text of every
// transaction it ran.
type recorder struct {
	*knftables.Fake
	txs []string
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.txs = append(r.txs, tx.String())
	return r.Fake.Run(ctx, tx)
}

func newFake(t *testing.T, opts Options) (*Dataplane, *recorder) {
	t.Helper()
	real := newEpoch
	newEpoch = func() string { return "test-epoch" }
	t.Cleanup(func() { newEpoch = real })
	rec := &recorder{Fake: knftables.NewFake(knftables.InetFamily, "portico")}
	opts.NFT = rec
	if opts.NodeName == "" {
		opts.NodeName = "node-a"
	}
	dp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return dp, rec
}

// svcBuilder makes fixtures: svc("ns", "name", withX(...), ...).
type svcOpt func(*Service)

func svc(name string, opts ...svcOpt) Service {
	s := Service{
		Key:             ServiceKey{Namespace: "default", Name: name},
		LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10")},
		TrafficPolicy:   Cluster,
		Ports:           []Port{{Name: "http", Protocol: TCP, Port: 80, NodePort: 30080}},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func withIPs(ips ...string) svcOpt {
	return func(s *Service) {
		s.LoadBalancerIPs = nil
		for _, ip := range ips {
			s.LoadBalancerIPs = append(s.LoadBalancerIPs, netip.MustParseAddr(ip))
		}
	}
}

// withEndpoints gives every port the endpoints "ip:port@node" (suffix
// "!" for not ready).
func withEndpoints(eps ...string) svcOpt {
	return func(s *Service) {
		for i := range s.Ports {
			s.Ports[i].Endpoints = nil
			for _, e := range eps {
				ready := !strings.HasSuffix(e, "!")
				e = strings.TrimSuffix(e, "!")
				addr, node, _ := strings.Cut(e, "@")
				ap := netip.MustParseAddrPort(addr)
				s.Ports[i].Endpoints = append(s.Ports[i].Endpoints, Endpoint{Addr: ap.Addr(), Port: ap.Port(), NodeName: node, Ready: ready})
			}
		}
	}
}

func withPorts(ps ...Port) svcOpt { return func(s *Service) { s.Ports = ps } }

func withLocal() svcOpt { return func(s *Service) { s.TrafficPolicy = Local } }

func withAffinity(d time.Duration) svcOpt { return func(s *Service) { s.AffinityTimeout = d } }

func withRanges(rs ...string) svcOpt {
	return func(s *Service) {
		for _, r := range rs {
			s.SourceRanges = append(s.SourceRanges, netip.MustParsePrefix(r))
		}
	}
}

// dump is the fake's table with map and set elements sorted: the fake keeps
// elements in insertion order, which the kernel does not promise either.
func dump(f *recorder) string {
	var rest, elems []string
	for _, l := range strings.SplitAfter(f.Dump(), "\n") {
		if dropDispatch && (strings.Contains(l, " inet portico dispatch-") || strings.Contains(l, " inet portico np-dispatch-")) {
			continue
		}
		if strings.HasPrefix(l, "add element ") {
			elems = append(elems, l)
		} else {
			rest = append(rest, l)
		}
	}
	slices.Sort(elems)
	return strings.Join(rest, "") + strings.Join(elems, "")
}

// dropDispatch leaves the shared dispatch chains out of dumps: Updates
// keep them after their last user goes (until the next Sync), so the
// property test compares the rest. (The fake still checks that every
// element's goto target exists.)
var dropDispatch bool

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from %s (-want +got):\n%s", name, path, diff)
	}
}

// scenarios are the golden-file cases; the kernel test loads each into a
// real table too.
var scenarios = []struct {
	name string
	opts Options
	svcs []Service
}{
	{name: "cluster-two-endpoints", svcs: []Service{
		svc("web", withEndpoints("10.1.0.1:8080@node-a", "10.1.0.2:8080@node-b", "10.1.0.3:8080@node-b!")),
	}},
	{name: "local-keeps-local-endpoints", svcs: []Service{
		svc("web", withLocal(), withEndpoints("10.1.0.1:8080@node-a", "10.1.0.2:8080@node-b")),
	}},
	{name: "local-without-local-endpoints-rejects", svcs: []Service{
		svc("web", withLocal(), withEndpoints("10.1.0.2:8080@node-b")),
	}},
	{name: "affinity", svcs: []Service{
		svc("web", withAffinity(3*time.Hour), withEndpoints("10.1.0.1:8080@node-a", "10.1.0.2:8080@node-a")),
	}},
	{name: "source-ranges-dual-stack", svcs: []Service{
		svc("web", withIPs("203.0.113.10", "2001:db8::10"), withRanges("192.0.2.0/24", "198.51.100.7/32"),
			withEndpoints("10.1.0.1:8080@node-a", "[fd00::1]:8080@node-a")),
	}},
	{name: "all-protocols", svcs: []Service{
		svc("multi", withPorts(
			Port{Name: "http", Protocol: TCP, Port: 80},
			Port{Name: "dns", Protocol: UDP, Port: 53},
			Port{Name: "sig", Protocol: SCTP, Port: 3868},
		), withEndpoints("10.1.0.1:9000@node-a")),
	}},
	{name: "kube-proxy-free", opts: Options{KubeProxyFree: true, NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, svcs: []Service{
		svc("web", withEndpoints("10.1.0.1:8080@node-a")),
		svc("empty", withIPs("203.0.113.11")),
	}},
	{name: "kube-proxy-free-any-local-address", opts: Options{KubeProxyFree: true, MasqueradeMark: 0x100000}, svcs: []Service{
		svc("web", withEndpoints("10.1.0.1:8080@node-a")),
	}},
}

func TestSyncGolden(t *testing.T) {
	for _, tt := range scenarios {
		t.Run(tt.name, func(t *testing.T) {
			dp, rec := newFake(t, tt.opts)
			if err := dp.Sync(context.Background(), tt.svcs); err != nil {
				t.Fatal(err)
			}
			if len(rec.txs) != 1 {
				t.Fatalf("Sync ran %d transactions, want 1", len(rec.txs))
			}
			golden(t, tt.name+".tx", rec.txs[0])
			golden(t, tt.name+".table", dump(rec))
		})
	}
}

func TestUpdateTouchesOnlyItsService(t *testing.T) {
	dp, rec := newFake(t, Options{})
	web := svc("web", withEndpoints("10.1.0.1:8080@node-a", "10.1.0.2:8080@node-a"))
	other := svc("other", withIPs("203.0.113.11"), withEndpoints("10.1.0.9:8080@node-a"))
	ctx := context.Background()
	if err := dp.Sync(ctx, []Service{web, other}); err != nil {
		t.Fatal(err)
	}
	// One endpoint replaced.
	web = svc("web", withEndpoints("10.1.0.1:8080@node-a", "10.1.0.3:8080@node-a"))
	if err := dp.Update(ctx, web); err != nil {
		t.Fatal(err)
	}
	if len(rec.txs) != 2 {
		t.Fatalf("ran %d transactions, want 2 (sync, one update)", len(rec.txs))
	}
	tx := rec.txs[1]
	golden(t, "update-one-endpoint.tx", tx)
	if strings.Contains(tx, "default/other") || strings.Contains(tx, "203.0.113.11") {
		t.Errorf("update of web touched service other:\n%s", tx)
	}
	if strings.Contains(tx, "flush map") || strings.Contains(tx, "flush chain inet portico services") {
		t.Errorf("update of one service flushed shared objects:\n%s", tx)
	}

	// No change, no transaction.
	if err := dp.Update(ctx, web); err != nil {
		t.Fatal(err)
	}
	if len(rec.txs) != 2 {
		t.Errorf("an unchanged Update ran a transaction:\n%s", rec.txs[len(rec.txs)-1])
	}
}

func TestUpdateBeforeSync(t *testing.T) {
	dp, _ := newFake(t, Options{})
	if err := dp.Update(context.Background(), svc("web")); err != ErrNotSynced {
		t.Errorf("Update before Sync: err = %v, want ErrNotSynced", err)
	}
	if err := dp.Delete(context.Background(), ServiceKey{"default", "web"}); err != ErrNotSynced {
		t.Errorf("Delete before Sync: err = %v, want ErrNotSynced", err)
	}
}

func TestInvalidProtocolIsRejected(t *testing.T) {
	dp, rec := newFake(t, Options{})
	bad := svc("bad", withPorts(Port{Name: "x", Protocol: "icmp", Port: 1}))
	good := svc("good", withIPs("203.0.113.12"), withEndpoints("10.1.0.1:80@node-a"))
	err := dp.Sync(context.Background(), []Service{bad, good})
	if err == nil {
		t.Fatal("Sync accepted protocol icmp")
	}
	if !strings.Contains(rec.Dump(), "203.0.113.12") {
		t.Error("a bad service kept a good one from being programmed")
	}
}

// TestIncrementalMatchesFullSync drives random Updates and Deletes and
// checks, after each, that the table equals what a fresh full Sync of the
// same Services builds: the incremental path never leaves stale objects
// nor misses new ones.
func TestIncrementalMatchesFullSync(t *testing.T) {
	dropDispatch = true
	defer func() { dropDispatch = false }()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kpf := range []bool{false, true} {
		t.Run(fmt.Sprintf("kubeProxyFree=%v", kpf), func(t *testing.T) {
			ctx := context.Background()
			dp, rec := newFake(t, Options{KubeProxyFree: kpf})
			if err := dp.Sync(ctx, nil); err != nil {
				t.Fatal(err)
			}
			live := map[ServiceKey]Service{}
			for step := range 300 {
				name := fmt.Sprintf("s%d", rng.IntN(6))
				if rng.IntN(5) == 0 {
					if err := dp.Delete(ctx, ServiceKey{"default", name}); err != nil {
						t.Fatal(err)
					}
					delete(live, ServiceKey{"default", name})
				} else {
					s := randomService(rng, name)
					if err := dp.Update(ctx, s); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					live[s.Key] = s
				}
				fresh, frec := newFake(t, Options{KubeProxyFree: kpf})
				var all []Service
				for _, s := range live {
					all = append(all, s)
				}
				if err := fresh.Sync(ctx, all); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(dump(frec), dump(rec)); diff != "" {
					t.Fatalf("step %d: incremental table differs from a full sync (-full +incremental):\n%s", step, diff)
				}
			}
		})
	}
}

func randomService(rng *rand.Rand, name string) Service {
	var opts []svcOpt
	ips := []string{"203.0.113.1", "203.0.113.2", "2001:db8::1"}
	opts = append(opts, withIPs(ips[rng.IntN(len(ips))]))
	if rng.IntN(3) == 0 {
		opts = append(opts, withLocal())
	}
	if rng.IntN(3) == 0 {
		opts = append(opts, withAffinity(time.Duration(1+rng.IntN(2))*time.Minute))
	}
	if rng.IntN(3) == 0 {
		opts = append(opts, withRanges("192.0.2.0/24"))
	}
	ports := []Port{{Name: "a", Protocol: TCP, Port: uint16(80 + rng.IntN(2)), NodePort: uint16(30000 + rng.IntN(3))}}
	if rng.IntN(2) == 0 {
		ports = append(ports, Port{Name: "b", Protocol: UDP, Port: 53, NodePort: 30100})
	}
	opts = append(opts, withPorts(ports...))
	var eps []string
	for i := range rng.IntN(4) {
		ep := fmt.Sprintf("10.1.0.%d:8080@node-%c", 1+rng.IntN(4), 'a'+rune(rng.IntN(2)))
		if i%2 == 1 && rng.IntN(2) == 0 {
			ep = fmt.Sprintf("[fd00::%d]:8080@node-a", 1+rng.IntN(3))
		}
		if rng.IntN(5) == 0 {
			ep += "!"
		}
		eps = append(eps, ep)
	}
	opts = append(opts, withEndpoints(eps...))
	return svc(name, opts...)
}

func TestDeleteRemovesEverything(t *testing.T) {
	ctx := context.Background()
	dp, rec := newFake(t, Options{KubeProxyFree: true})
	empty, erec := newFake(t, Options{KubeProxyFree: true})
	if err := empty.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s := svc("web", withAffinity(time.Minute), withRanges("192.0.2.0/24"), withEndpoints("10.1.0.1:8080@node-a", "10.1.0.2:8080@node-a"))
	if err := dp.Sync(ctx, []Service{s}); err != nil {
		t.Fatal(err)
	}
	if err := dp.Delete(ctx, s.Key); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dump(erec), dump(rec)); diff != "" {
		t.Errorf("after Delete the table is not empty of the service (-want +got):\n%s", diff)
	}
}

func TestSyncRemovesStaleObjects(t *testing.T) {
	ctx := context.Background()
	dp, rec := newFake(t, Options{})
	a := svc("a", withAffinity(time.Minute), withEndpoints("10.1.0.1:8080@node-a"))
	b := svc("b", withIPs("203.0.113.20"), withAffinity(time.Minute), withEndpoints("10.1.0.2:8080@node-a"))
	if err := dp.Sync(ctx, []Service{a, b}); err != nil {
		t.Fatal(err)
	}
	// A restarted forwarder knows only a and finds b's objects in the table.
	dp2, err := New(Options{NFT: rec, NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp2.Sync(ctx, []Service{a}); err != nil {
		t.Fatal(err)
	}
	fresh, frec := newFake(t, Options{})
	if err := fresh.Sync(ctx, []Service{a}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dump(frec), dump(rec)); diff != "" {
		t.Errorf("resync left stale objects (-want +got):\n%s", diff)
	}
}

func TestRemovedEndpoints(t *testing.T) {
	dp, _ := newFake(t, Options{})
	prev := svc("web", withPorts(Port{Name: "dns", Protocol: UDP, Port: 53}, Port{Name: "http", Protocol: TCP, Port: 80}),
		withEndpoints("10.1.0.1:53@node-a", "10.1.0.2:53@node-a"))
	cur := svc("web", withPorts(Port{Name: "dns", Protocol: UDP, Port: 53}, Port{Name: "http", Protocol: TCP, Port: 80}),
		withEndpoints("10.1.0.1:53@node-a", "10.1.0.2:53@node-a!"))
	got := dp.removedEndpoints(&prev, &cur)
	want := []RemovedEndpoint{{Protocol: UDP, Addr: netip.MustParseAddr("10.1.0.2"), Port: 53}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("removed endpoints (-want +got):\n%s", diff)
	}
}

// TestKernelAcceptsScenarios loads every golden scenario into a real
// nftables table in a fresh network namespace (the kernel, not the fake,
// judges the syntax), then removes each Service incrementally.
func TestKernelAcceptsScenarios(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces and nftables)")
	}
	lab, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	host, err := lab.AddHost("node", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8:1::1/64"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range scenarios {
		t.Run(tt.name, func(t *testing.T) {
			err := host.Do(func() error {
				opts := tt.opts
				opts.NodeName = "node-a"
				dp, err := New(opts)
				if err != nil {
					return err
				}
				if err := dp.Sync(ctx, tt.svcs); err != nil {
					return fmt.Errorf("sync: %w", err)
				}
				for _, s := range tt.svcs {
					changed := s
					changed.Ports = nil
					if err := dp.Update(ctx, changed); err != nil {
						return fmt.Errorf("update: %w", err)
					}
					if err := dp.Update(ctx, s); err != nil {
						return fmt.Errorf("update back: %w", err)
					}
					if err := dp.Delete(ctx, s.Key); err != nil {
						return fmt.Errorf("delete: %w", err)
					}
				}
				return dp.Cleanup(ctx)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCounts: the counts behind portico_forwarder_nftables_objects follow
// what the table holds: each Service's chains, rules, sets and map elements,
// added on Sync and Update, gone on Delete.
func TestCounts(t *testing.T) {
	dp, _ := newFake(t, Options{})
	ctx := context.Background()
	if c := dp.Counts(); c != (Counts{}) {
		t.Fatalf("empty data plane counts %+v", c)
	}
	web := svc("web", withEndpoints("10.1.0.1:8080@node-a"))
	other := svc("other", withIPs("203.0.113.11"), withEndpoints("10.1.0.9:8080@node-a"))
	if err := dp.Sync(ctx, []Service{web}); err != nil {
		t.Fatal(err)
	}
	one := dp.Counts()
	if one.Services != 1 || one.Elements == 0 {
		t.Fatalf("one Service: %+v", one)
	}
	if err := dp.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	two := dp.Counts()
	if two.Services != 2 || two.Elements <= one.Elements {
		t.Fatalf("two Services: %+v after %+v", two, one)
	}
	if err := dp.Delete(ctx, other.Key); err != nil {
		t.Fatal(err)
	}
	if c := dp.Counts(); c != one {
		t.Errorf("after deleting one of two: %+v, want %+v", c, one)
	}
}

// FuzzCounterName: counter names are read back from the kernel table; only
// a name counterName makes parses, and it parses back to its address.
func FuzzCounterName(f *testing.F) {
	f.Add("bytes-in-cb00710a")
	f.Add("bytes-out-20010db8000000000000000000000001")
	f.Add("bytes-epoch")
	f.Add("bytes-in-zz")
	f.Fuzz(func(t *testing.T, name string) {
		dir, addr, ok := parseCounterName(name)
		if !ok {
			return
		}
		if got := counterName(dir, addr); got != name {
			t.Fatalf("parseCounterName(%q) = %s %s, which names %q", name, dir, addr, got)
		}
	})
}

// TestApplyBatchMatchesFullSync applies random batches of Updates and
// Deletes in one call each (Services of a batch share addresses and ports,
// so claims change hands inside one transaction) and checks, after each,
// that the table equals a fresh full Sync of the same Services and that the
// batch ran as one transaction.
func TestApplyBatchMatchesFullSync(t *testing.T) {
	dropDispatch = true
	defer func() { dropDispatch = false }()
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	dp, rec := newFake(t, Options{})
	if err := dp.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	live := map[ServiceKey]Service{}
	for step := range 200 {
		var updates []Service
		var deletes []ServiceKey
		seen := map[string]bool{}
		for range 1 + rng.IntN(5) {
			name := fmt.Sprintf("s%d", rng.IntN(8))
			if seen[name] {
				continue
			}
			seen[name] = true
			if rng.IntN(4) == 0 {
				deletes = append(deletes, ServiceKey{"default", name})
				delete(live, ServiceKey{"default", name})
				continue
			}
			s := randomService(rng, name)
			updates = append(updates, s)
			live[s.Key] = s
		}
		runs := len(rec.txs)
		if err := dp.Apply(ctx, updates, deletes); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if n := len(rec.txs) - runs; n > 2 {
			t.Fatalf("step %d: a batch of %d changes ran %d transactions, want one (and one for counters)", step, len(updates)+len(deletes), n)
		}
		fresh, frec := newFake(t, Options{})
		var all []Service
		for _, s := range live {
			all = append(all, s)
		}
		if err := fresh.Sync(ctx, all); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(dump(frec), dump(rec)); diff != "" {
			t.Fatalf("step %d: batched table differs from a full sync (-full +batched):\n%s", step, diff)
		}
	}
}
