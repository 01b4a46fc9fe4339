package plugin_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// bgpPeers: a router every node peers with (one node down, with GoBGP's
// complaint), a peer disabled for want of its password Secret, and one no
// node reports on yet.
func bgpPeers() []client.Object {
	since := metav1.NewTime(now.Add(-3 * time.Hour))
	peer := func(name, addr string, sessions ...v1alpha1.BGPSession) *v1alpha1.BGPPeer {
		return &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ago(24 * time.Hour)},
			Spec:   v1alpha1.BGPPeerSpec{Address: addr, PeerASN: 64512, MyASN: 64513, Port: 179},
			Status: v1alpha1.BGPPeerStatus{Sessions: sessions}}
	}
	return []client.Object{
		peer("tor", "10.0.0.254",
			v1alpha1.BGPSession{Node: "node-b", State: "Established", EstablishedSince: &since, Advertised: 12},
			v1alpha1.BGPSession{Node: "node-a", State: "Established", EstablishedSince: &since, Advertised: 12},
			v1alpha1.BGPSession{Node: "node-c", State: "Active", LastError: "failed to connect: connection refused"}),
		peer("locked", "10.0.1.254",
			v1alpha1.BGPSession{Node: "node-a", State: "Disabled", LastError: `password Secret "tor-pw" not found in the forwarders' namespace`}),
		peer("new", "2001:db8::1"),
	}
}

// TestPeers: kubectl lb peers shows one row per peer and node, sorted, with
// state, uptime, routes and the last error; a peer without sessions says so.
func TestPeers(t *testing.T) {
	w := world{objs: append(cluster(), bgpPeers()...)}
	r := w.run(t, "peers")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	golden(t, "peers", r.stdout+stderrSection(r.stderr))

	empty := world{objs: cluster()}
	r = empty.run(t, "peers")
	if r.code != 0 || r.stderr != "No BGPPeers found.\n" {
		t.Errorf("without peers: exit %d, stderr %q", r.code, r.stderr)
	}
}
