package healthcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/dataplane"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freePort finds a TCP port nobody listens on at the moment.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

type probe struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, port uint16, path string) (probe, error) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return probe{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return probe{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

func newServer(t *testing.T, healthy func() bool) *Server {
	t.Helper()
	s := NewServer(Options{BindAddresses: []netip.Addr{loopback}, Healthy: healthy})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestResponsesMatchKubeProxy(t *testing.T) {
	port := freePort(t)
	s := newServer(t, nil)
	ctx := context.Background()
	if err := s.Sync(ctx, []Service{{Namespace: "shop", Name: "web", NodePort: port, LocalEndpoints: 2}}); err != nil {
		t.Fatal(err)
	}
	p, err := get(t, port, "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	// kube-proxy's body: its dedented template, tab-indented, no trailing newline.
	want := "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
	if p.status != http.StatusOK || p.body != want {
		t.Errorf("got %d %q, want 200 %q", p.status, p.body, want)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "X-Load-Balancing-Endpoint-Weight": "2"} {
		if got := p.header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	var parsed struct {
		Service             struct{ Namespace, Name string }
		LocalEndpoints      int  `json:"localEndpoints"`
		ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
	}
	if err := json.Unmarshal([]byte(p.body), &parsed); err != nil || parsed.Service.Name != "web" || parsed.LocalEndpoints != 2 || !parsed.ServiceProxyHealthy {
		t.Errorf("body does not parse as the expected JSON: %+v, %v", parsed, err)
	}
	// Any path answers, as with kube-proxy.
	if p2, err := get(t, port, "/"); err != nil || p2.status != http.StatusOK {
		t.Errorf("GET / = %v, %v; want 200", p2.status, err)
	}
}

func TestNoLocalEndpointsIs503AndUpdatesInPlace(t *testing.T) {
	port := freePort(t)
	s := newServer(t, nil)
	ctx := context.Background()
	svc := Service{Namespace: "shop", Name: "web", NodePort: port}
	if err := s.Sync(ctx, []Service{svc}); err != nil {
		t.Fatal(err)
	}
	p, err := get(t, port, "/")
	if err != nil {
		t.Fatal(err)
	}
	if p.status != http.StatusServiceUnavailable || p.header.Get("X-Load-Balancing-Endpoint-Weight") != "0" {
		t.Errorf("no endpoints: status %d weight %q, want 503 and 0", p.status, p.header.Get("X-Load-Balancing-Endpoint-Weight"))
	}
	svc.LocalEndpoints = 3
	if err := s.Sync(ctx, []Service{svc}); err != nil {
		t.Fatal(err)
	}
	if p, err := get(t, port, "/"); err != nil || p.status != http.StatusOK || p.body != Body("shop", "web", 3, true) {
		t.Errorf("after endpoints appeared: %+v, %v", p, err)
	}
}

func TestUnhealthyProxyIs503(t *testing.T) {
	port := freePort(t)
	var healthy atomic.Bool
	s := newServer(t, healthy.Load)
	if err := s.Sync(context.Background(), []Service{{Namespace: "a", Name: "b", NodePort: port, LocalEndpoints: 1}}); err != nil {
		t.Fatal(err)
	}
	p, err := get(t, port, "/")
	if err != nil {
		t.Fatal(err)
	}
	if p.status != http.StatusServiceUnavailable || p.body != Body("a", "b", 1, false) {
		t.Errorf("unhealthy forwarder: %d %q, want 503 with serviceProxyHealthy false", p.status, p.body)
	}
	healthy.Store(true)
	if p, err := get(t, port, "/"); err != nil || p.status != http.StatusOK {
		t.Errorf("healthy again: %+v, %v", p, err)
	}
}

func TestRemovedServiceClosesItsPort(t *testing.T) {
	a, b := freePort(t), freePort(t)
	s := newServer(t, nil)
	ctx := context.Background()
	if err := s.Sync(ctx, []Service{{Namespace: "x", Name: "a", NodePort: a, LocalEndpoints: 1}, {Namespace: "x", Name: "b", NodePort: b, LocalEndpoints: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, []Service{{Namespace: "x", Name: "b", NodePort: b, LocalEndpoints: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, a, "/"); err == nil {
		t.Error("port of the removed service still answers")
	}
	if p, err := get(t, b, "/"); err != nil || p.status != http.StatusOK {
		t.Errorf("kept service: %+v, %v", p, err)
	}
}

func TestPortInUseIsReportedOthersServed(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := uint16(busy.Addr().(*net.TCPAddr).Port)
	ok := freePort(t)
	s := newServer(t, nil)
	err = s.Sync(context.Background(), []Service{{Namespace: "x", Name: "a", NodePort: busyPort}, {Namespace: "x", Name: "b", NodePort: ok, LocalEndpoints: 1}})
	if err == nil {
		t.Error("Sync did not report the port in use")
	}
	if p, err := get(t, ok, "/"); err != nil || p.status != http.StatusOK {
		t.Errorf("other service: %+v, %v", p, err)
	}
}

func TestSamePortFirstServiceWins(t *testing.T) {
	port := freePort(t)
	s := newServer(t, nil)
	if err := s.Sync(context.Background(), []Service{{Namespace: "x", Name: "z", NodePort: port}, {Namespace: "x", Name: "a", NodePort: port, LocalEndpoints: 1}}); err != nil {
		t.Fatal(err)
	}
	if p, err := get(t, port, "/"); err != nil || p.body != Body("x", "a", 1, true) {
		t.Errorf("shared port: %+v, %v; want x/a served", p, err)
	}
}

func TestFromDataplane(t *testing.T) {
	ep := func(ip, node string, ready bool) dataplane.Endpoint {
		return dataplane.Endpoint{Addr: netip.MustParseAddr(ip), Port: 80, NodeName: node, Ready: ready}
	}
	svcs := []dataplane.Service{
		{Key: dataplane.ServiceKey{Namespace: "a", Name: "local"}, TrafficPolicy: dataplane.Local, HealthCheckNodePort: 32000,
			Ports: []dataplane.Port{{Protocol: dataplane.TCP, Port: 80, Endpoints: []dataplane.Endpoint{ep("10.0.0.1", "me", true), ep("10.0.0.2", "me", false), ep("10.0.0.3", "other", true)}}}},
		{Key: dataplane.ServiceKey{Namespace: "a", Name: "cluster"}, TrafficPolicy: dataplane.Cluster, HealthCheckNodePort: 32001},
		{Key: dataplane.ServiceKey{Namespace: "a", Name: "noport"}, TrafficPolicy: dataplane.Local},
	}
	got := FromDataplane(svcs, "me")
	want := []Service{{Namespace: "a", Name: "local", NodePort: 32000, LocalEndpoints: 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FromDataplane = %+v, want %+v", got, want)
	}
}
