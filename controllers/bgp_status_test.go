package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/memory"
)

// setSessions writes a BGPPeer's status.sessions as the forwarders do
// (node:state entries).
func setSessions(t *testing.T, peer string, sessions ...string) {
	t.Helper()
	var list []lbv1.BGPSession
	for _, s := range sessions {
		node, state, _ := strings.Cut(s, ":")
		list = append(list, lbv1.BGPSession{Node: node, State: state})
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"sessions": list}})
	if err != nil {
		t.Fatal(err)
	}
	obj := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	if err := env.Client.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, body)); err != nil {
		t.Fatal(err)
	}
}

// readyOf returns the Service's Ready condition, or an error saying what is
// missing.
func readyOf(svc *corev1.Service) (*metav1.Condition, error) {
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), svc); err != nil {
		return nil, err
	}
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		return nil, fmt.Errorf("no address yet")
	}
	c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionReady)
	if c == nil {
		return nil, fmt.Errorf("no Ready condition")
	}
	return c, nil
}

func waitServiceEvent(t *testing.T, svc *corev1.Service, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(svc.Namespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == reason && e.Regarding.Name == svc.Name {
				return nil
			}
		}
		return fmt.Errorf("no %s Event on Service %s", reason, svc.Name)
	})
}

// TestBGPSessionInReadyCondition runs the operator with the local backend on
// the real apiserver. A Service whose address lies in an IPPool announced by
// BGP only is not Ready (NoBGPSession, with an Event) while no node has an
// Established session with a BGPPeer that receives the pool; once a
// forwarder reports one, it is Ready and its LoadBalancer status names the
// node as advertising the address; when the session drops, it is not Ready
// again. Before, the Service was Ready whatever the sessions, and nothing
// said which nodes advertise the address.
func TestBGPSessionInReadyCondition(t *testing.T) {
	ns := namespace(t)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
	})
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	node := "bgp-node-" + suffix
	createNode(t, gen.Node(node, "10.1.9.1"))
	pool := ippool("bgp-only-"+suffix, "203.0.113.96/30")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceBGP
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.1", PeerASN: 64512, MyASN: 64513}}
	create(t, &pool, peer)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &pool)
		_ = env.Client.Delete(context.Background(), peer)
	})
	svc := localService("routed", localClass)
	svc.Namespace = ns
	svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	create(t, &svc)
	t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })

	notReady := func() error {
		c, err := readyOf(&svc)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionFalse || c.Reason != "NoBGPSession" || !strings.Contains(c.Message, peer.Name) {
			return fmt.Errorf("Ready condition %+v, want False/NoBGPSession naming %s", c, peer.Name)
		}
		return nil
	}
	eventually(t, 20*time.Second, notReady)
	waitServiceEvent(t, &svc, "NoBGPSession")

	setSessions(t, peer.Name, node+":Established")
	eventually(t, 20*time.Second, func() error {
		c, err := readyOf(&svc)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready condition %+v, want True", c)
		}
		var rec lbv1.LoadBalancer
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&svc), &rec); err != nil {
			return err
		}
		b := rec.Status.BGP
		if b == nil || !slices.Equal(b.AdvertisingNodes, []string{node}) || len(b.Addresses) != 1 ||
			b.Addresses[0].Address != "203.0.113.96" || b.Addresses[0].IPPool != pool.Name || !slices.Equal(b.Addresses[0].Peers, []string{peer.Name}) {
			return fmt.Errorf("LoadBalancer status.bgp %+v, want %s advertising 203.0.113.96 to %s", b, node, peer.Name)
		}
		return nil
	})

	waitServiceEvent(t, &svc, controllers.ReasonRouted)

	setSessions(t, peer.Name, node+":Active")
	eventually(t, 20*time.Second, notReady)
	eventually(t, 20*time.Second, func() error {
		var rec lbv1.LoadBalancer
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&svc), &rec); err != nil {
			return err
		}
		if b := rec.Status.BGP; b == nil || len(b.AdvertisingNodes) != 0 || len(b.Addresses) != 1 {
			return fmt.Errorf("after the session dropped, status.bgp is %+v", b)
		}
		return nil
	})
}

// TestBGPDegradedWithL2: a Service in an L2AndBGP pool without any BGP
// session stays Ready (L2 answers for the address), and the Ready message
// and a Degraded Event say BGP is not advertising it.
func TestBGPDegradedWithL2(t *testing.T) {
	ns := namespace(t)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
	})
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	createNode(t, gen.Node("l2bgp-node-"+suffix, "10.1.9.2"))
	pool := ippool("l2-and-bgp-"+suffix, "203.0.113.100/30")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceL2AndBGP
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-l2-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.2", PeerASN: 64512, MyASN: 64513}}
	create(t, &pool, peer)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &pool)
		_ = env.Client.Delete(context.Background(), peer)
	})
	svc := localService("both", localClass)
	svc.Namespace = ns
	svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	create(t, &svc)
	t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
	eventually(t, 20*time.Second, func() error {
		c, err := readyOf(&svc)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "L2 still answers") || !strings.Contains(c.Message, peer.Name) {
			return fmt.Errorf("Ready condition %+v, want True with a message on BGP", c)
		}
		return nil
	})
	waitServiceEvent(t, &svc, controllers.ReasonDegraded)
}

// TestIPPoolAdvertisedByNoPeer runs the operator with the local backend: an
// IPPool announced by BGP whose only BGPAdvertisement names a BGPPeer that
// does not exist gets Advertised False (NoPeer) and an Event; creating the
// peer makes it True. Before, nothing said the pool reached no router.
func TestIPPoolAdvertisedByNoPeer(t *testing.T) {
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
	})
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	pool := ippool("unrouted-"+suffix, "203.0.113.104/30")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceBGP
	adv := &lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "to-missing-" + suffix},
		Spec: lbv1.BGPAdvertisementSpec{IPPools: []string{pool.Name}, Peers: []string{"tor-" + suffix}}}
	create(t, &pool, adv)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &pool)
		_ = env.Client.Delete(context.Background(), adv)
	})
	advertised := func(status metav1.ConditionStatus, reason, says string) func() error {
		return func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&pool), &pool); err != nil {
				return err
			}
			c := meta.FindStatusCondition(pool.Status.Conditions, local.IPPoolAdvertised)
			if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, says) {
				return fmt.Errorf("Advertised condition %+v, want %s/%s saying %q", c, status, reason, says)
			}
			return nil
		}
	}
	// The message names the BGPPeer that does not exist.
	eventually(t, 20*time.Second, advertised(metav1.ConditionFalse, "NoPeer", "tor-"+suffix))
	eventually(t, 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == "NoPeer" && e.Regarding.Kind == "IPPool" && e.Regarding.Name == pool.Name {
				return nil
			}
		}
		return fmt.Errorf("no NoPeer Event on IPPool %s", pool.Name)
	})
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.3", PeerASN: 64512, MyASN: 64513}}
	create(t, peer)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), peer) })
	eventually(t, 20*time.Second, advertised(metav1.ConditionTrue, "Advertised", "tor-"+suffix))
}

// bgpOf reads the Service's LoadBalancer status.bgp.
func bgpOf(svc *corev1.Service) (*lbv1.BGPStatus, error) {
	var rec lbv1.LoadBalancer
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), &rec); err != nil {
		return nil, err
	}
	return rec.Status.BGP, nil
}

// routedBy waits until svc is Ready with status.bgp naming exactly nodes
// as advertising its one address to peer.
func routedBy(t *testing.T, svc *corev1.Service, peer string, nodes ...string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		c, err := readyOf(svc)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("%s: Ready condition %+v, want True", svc.Name, c)
		}
		b, err := bgpOf(svc)
		if err != nil {
			return err
		}
		if b == nil || len(b.Addresses) != 1 || !slices.Equal(b.Addresses[0].Nodes, nodes) || !slices.Equal(b.Addresses[0].Peers, []string{peer}) {
			return fmt.Errorf("%s: status.bgp %+v, want nodes %v advertising to %s", svc.Name, b, nodes, peer)
		}
		return nil
	})
}

// notRouted waits until svc is not Ready for reason, with status.bgp naming
// no advertising node.
func notRouted(t *testing.T, svc *corev1.Service, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		c, err := readyOf(svc)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Errorf("%s: Ready condition %+v, want False/%s", svc.Name, c, reason)
		}
		b, err := bgpOf(svc)
		if err != nil {
			return err
		}
		if b == nil || len(b.AdvertisingNodes) != 0 {
			return fmt.Errorf("%s: status.bgp %+v, want no advertising node", svc.Name, b)
		}
		return nil
	})
}

// TestBGPSharedAddressJudgedTogether: two Services share an address of a
// BGP-only pool; a BGPAdvertisement's serviceSelector leaves out one of
// them, so the forwarders advertise the address for the other (bgp.Plan:
// an address is advertised when any holder qualifies). Both Services must
// say so: Ready, with the node in status.bgp. When the other one's labels
// change so that neither qualifies, both are not Ready (NoBGPPeer), and
// when it is deleted the left-out one is not Ready, without waiting for the
// resync (an hour here). Before, the left-out Service was judged alone:
// not Ready (NoBGPPeer) while the routers had its address.
func TestBGPSharedAddressJudgedTogether(t *testing.T) {
	ns := namespace(t)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
		o.ResyncPeriod = time.Hour
	})
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	node := "bgp-share-" + suffix
	createNode(t, gen.Node(node, "10.1.9.3"))
	pool := ippool("bgp-shared-"+suffix, "203.0.113.108/32")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceBGP
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-share-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.4", PeerASN: 64512, MyASN: 64513}}
	adv := &lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "not-quiet-" + suffix},
		Spec: lbv1.BGPAdvertisementSpec{IPPools: []string{pool.Name}, ServiceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"quiet"}}}}}}
	create(t, &pool, peer, adv)
	t.Cleanup(func() {
		for _, o := range []client.Object{&pool, peer, adv} {
			_ = env.Client.Delete(context.Background(), o)
		}
	})
	setSessions(t, peer.Name, node+":Established")
	mk := func(name, tier string, port int32) *corev1.Service {
		svc := localService(name, localClass)
		svc.Namespace = ns
		svc.Labels = map[string]string{"tier": tier}
		svc.Annotations = map[string]string{model.AnnotationAllowSharedIP: "k"}
		svc.Spec.Ports = []corev1.ServicePort{{Port: port, Protocol: corev1.ProtocolTCP}}
		create(t, &svc)
		t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
		return &svc
	}
	quiet := mk("quiet", "quiet", 80)
	notRouted(t, quiet, "NoBGPPeer") // alone, nothing advertises it
	loud := mk("loud", "loud", 443)
	routedBy(t, loud, peer.Name, node)
	if ip, err := readyOf(loud); err != nil || loud.Status.LoadBalancer.Ingress[0].IP != "203.0.113.108" {
		t.Fatalf("loud does not share the pool's one address: %v %v", ip, err)
	}
	routedBy(t, quiet, peer.Name, node)

	testenv.UpdateService(t, env.Client, loud, func(s *corev1.Service) { s.Labels["tier"] = "quiet" })
	notRouted(t, loud, "NoBGPPeer")
	notRouted(t, quiet, "NoBGPPeer")
	testenv.UpdateService(t, env.Client, loud, func(s *corev1.Service) { s.Labels["tier"] = "loud" })
	routedBy(t, quiet, peer.Name, node)
	// loud goes: nothing advertises quiet's address any more.
	testenv.DeleteServiceAndWait(t, env.Client, loud)
	notRouted(t, quiet, "NoBGPPeer")
}

// TestBGPNodeRelabel: a BGPPeer's nodeSelector picks nodes by label; when
// the node is relabelled out of it, its forwarder closes the session, so the
// Service's status.bgp and Ready say at once that no node advertises the
// address, and again when it is relabelled back; the resync period (an
// hour here) is not waited for. Label changes no selector sees and node
// heartbeats cost no write. Before, nothing watched node labels for BGP:
// the status waited for the resync.
func TestBGPNodeRelabel(t *testing.T) {
	ns := namespace(t)
	var mu sync.Mutex
	var log []string
	logOperatorWrites(t, &mu, &log, nil)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
		o.ResyncPeriod = time.Hour
	})
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	node := "bgp-rack-" + suffix
	n := gen.Node(node, "10.1.9.4", gen.WithLabel("rack", "a"))
	createNode(t, n)
	pool := ippool("bgp-rack-"+suffix, "203.0.113.112/30")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceBGP
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-rack-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.5", PeerASN: 64512, MyASN: 64513,
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}}}
	create(t, &pool, peer)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &pool)
		_ = env.Client.Delete(context.Background(), peer)
	})
	// The forwarder's entry stays Established: the operator must see that
	// the peer no longer selects the node (a forwarder that is slow to
	// close, or a dead one, leaves its entry as it was).
	setSessions(t, peer.Name, node+":Established")
	svc := localService("racked", localClass)
	svc.Namespace = ns
	svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	create(t, &svc)
	t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
	routedBy(t, &svc, peer.Name, node)

	relabel := func(k, v string) {
		t.Helper()
		var cur corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: node}, &cur); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Labels[k] = v
		if err := env.Client.Patch(ctx, &cur, patch); err != nil {
			t.Fatal(err)
		}
	}
	// Heartbeats and a label no selector reads: no write at all.
	time.Sleep(time.Second)
	mu.Lock()
	log = nil
	mu.Unlock()
	relabel("unrelated", "x")
	for i := range 10 {
		cur := get(t, n.DeepCopy())
		for j := range cur.Status.Conditions {
			cur.Status.Conditions[j].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Duration(i) * time.Second))
		}
		if err := env.Client.Status().Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // more than the node batch window and the BGP watch's
	mu.Lock()
	writes := slices.Clone(log)
	mu.Unlock()
	if len(writes) != 0 {
		t.Errorf("heartbeats and an unrelated label cost %d writes:\n%s", len(writes), strings.Join(writes, "\n"))
	}

	relabel("rack", "b")
	notRouted(t, &svc, "NoBGPSession")
	relabel("rack", "a")
	routedBy(t, &svc, peer.Name, node)
}

// TestBGPKwokHeartbeatsCostNothing: kwok nodes (kwok renews their Leases
// every 2s and posts their Ready heartbeat) selected by a BGPPeer, each with
// an Established session, advertise the addresses of BGP-only Services;
// once the Services are Ready, the heartbeats cost the operator no write
// (issue 18's rule, with the BGP status watching nodes).
func TestBGPKwokHeartbeatsCostNothing(t *testing.T) {
	ns := namespace(t)
	var mu sync.Mutex
	var log []string
	logOperatorWrites(t, &mu, &log, nil)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
		o.ResyncPeriod = time.Hour
	})
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	var nodes, sessions []string
	for i := range 3 {
		name := fmt.Sprintf("kwok-bgp-%s-%d", suffix, i)
		n := gen.Node(name, fmt.Sprintf("10.1.10.%d", i+1), gen.WithLabel("rack", "a"))
		n.Annotations = map[string]string{testenv.KwokNodeAnnotation: testenv.KwokNodeValue}
		n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
		if err := testenv.CreateNodeWithStatus(ctx, env.Client, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
		nodes = append(nodes, name)
		sessions = append(sessions, name+":Established")
	}
	pool := ippool("bgp-kwok-"+suffix, "203.0.113.116/30")
	pool.Generation = 0
	pool.Spec.Announce = lbv1.AnnounceBGP
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-kwok-" + suffix},
		Spec: lbv1.BGPPeerSpec{Address: "10.0.0.6", PeerASN: 64512, MyASN: 64513,
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}}}
	create(t, &pool, peer)
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &pool)
		_ = env.Client.Delete(context.Background(), peer)
	})
	setSessions(t, peer.Name, sessions...)
	var svcs []*corev1.Service
	for i := range 2 {
		svc := localService(fmt.Sprint("kwok-", i), localClass)
		svc.Namespace = ns
		svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
		create(t, &svc)
		t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
		svcs = append(svcs, &svc)
	}
	for _, svc := range svcs {
		routedBy(t, svc, peer.Name, nodes...)
	}
	// kwok has taken the nodes over: their Leases are renewed.
	eventually(t, 20*time.Second, func() error {
		for _, name := range nodes {
			var l coordinationv1.Lease
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: name}, &l); err != nil {
				return err
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				return fmt.Errorf("Lease of %s has no holder", name)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the Services' own writes settle
	mu.Lock()
	log = nil
	mu.Unlock()
	calls := localCalls(t)
	// Lease renewals for 6s, and a Ready heartbeat of every node as kwok
	// posts it (every 10 minutes, too rarely to wait for).
	for _, name := range nodes {
		var n corev1.Node
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
			t.Fatal(err)
		}
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
		}
		if err := env.Client.Status().Update(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(6 * time.Second)
	mu.Lock()
	writes := slices.Clone(log)
	mu.Unlock()
	if len(writes) != 0 {
		t.Errorf("kwok heartbeats of BGP nodes cost %d writes:\n%s", len(writes), strings.Join(writes, "\n"))
	}
	if got := localCalls(t); got != calls {
		t.Errorf("kwok heartbeats of BGP nodes cost %v calls of the local backend", got-calls)
	}
	for _, svc := range svcs {
		routedBy(t, svc, peer.Name, nodes...)
	}
}

// localCalls is the number of calls of the local backend so far
// (portico_provider_calls_total).
func localCalls(t *testing.T) float64 {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "portico_provider_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "class" && l.GetValue() == localClass {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
