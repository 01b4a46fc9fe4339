package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
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
