// Command programming measures how fast the dataplane programs the kernel:
// it loads 10,000 LoadBalancer Services with endpoints into a real nftables
// table (in a network namespace of its own), then changes one endpoint of
// random Services, one at a time, and times each change from the
// EndpointSlice edit to the rule being live: FromKubernetes and Update, one
// nftables transaction that the kernel has committed when Update returns.
// Every change is then verified by reading the Service's chain back from
// the kernel (not timed: reading back costs as much as writing, because
// nft fetches the ruleset's chain list for either). The CPU time the nft
// processes used is reported too, since on a busy machine the wall time is
// mostly waiting for a CPU. Needs root and nft.
//
// The last line is: programming: services=<n> p99_ms=<n> full_sync_ms=<n>
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/e2e/netlab"
)

func main() {
	services := flag.Int("services", 10000, "Services to load")
	changes := flag.Int("changes", 300, "endpoint changes to time")
	flag.Parse()
	if err := run(*services, *changes); err != nil {
		fmt.Fprintln(os.Stderr, "bench-programming:", err)
		os.Exit(1)
	}
}

func lbIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}) }

func podIP(i, n int) string { return fmt.Sprintf("10.%d.%d.%d", 10+n, i/250, i%250+1) }

func kubeObjects(i int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30000 + int32(i%2000)}},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: lbIP(i).String()}}}},
	}
	portName, proto, port := "http", corev1.ProtocolTCP, int32(8080)
	node := "node-a"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{podIP(i, 0)}, NodeName: &node},
			{Addresses: []string{podIP(i, 1)}, NodeName: &node},
		},
	}
	return svc, es
}

func run(n, changes int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces and nftables)")
	}
	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()
	node, err := lab.AddHost("node", netip.MustParsePrefix("192.0.2.1/24"), netip.Prefix{})
	if err != nil {
		return err
	}
	ctx := context.Background()

	kubeSvcs := make([]*corev1.Service, n)
	slicesOf := make([]*discoveryv1.EndpointSlice, n)
	svcs := make([]dataplane.Service, n)
	for i := range n {
		kubeSvcs[i], slicesOf[i] = kubeObjects(i)
		if svcs[i], err = dataplane.FromKubernetes(kubeSvcs[i], []*discoveryv1.EndpointSlice{slicesOf[i]}); err != nil {
			return err
		}
	}

	var dp *dataplane.Dataplane
	var fullSync, resync time.Duration
	err = node.Do(func() error {
		if dp, err = dataplane.New(dataplane.Options{NodeName: "node-a"}); err != nil {
			return err
		}
		start := time.Now()
		if err := dp.Sync(ctx, svcs); err != nil {
			return err
		}
		fullSync = time.Since(start)
		// A restarted forwarder resyncs onto the populated table.
		dp2, err := dataplane.New(dataplane.Options{NodeName: "node-a"})
		if err != nil {
			return err
		}
		start = time.Now()
		if err := dp2.Sync(ctx, svcs); err != nil {
			return err
		}
		resync = time.Since(start)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("loaded %d services: full sync %v, resync onto the populated table %v\n", n, fullSync.Round(time.Millisecond), resync.Round(time.Millisecond))
	chains, err := node.Command("nft", "list", "chains", "inet").Output()
	if err != nil {
		return fmt.Errorf("listing chains: %w", err)
	}
	fmt.Printf("kernel table holds %d chains\n", strings.Count(string(chains), "chain "))

	rng := rand.New(rand.NewPCG(42, 7))
	// The first readBack changes are read back at once (nft get element
	// reads the whole map, about a second at this size); all of them are
	// checked in one listing at the end.
	const readBack = 20
	latest := map[int]string{}
	var commit, live, cpu []time.Duration
	for c := range changes {
		i := rng.IntN(n)
		es := slicesOf[i].DeepCopy()
		newIP := fmt.Sprintf("10.%d.%d.%d", 100+c/62500, c/250%250, c%250+1)
		es.Endpoints[rng.IntN(2)].Addresses = []string{newIP}
		var tCommit, tLive, tCPU time.Duration
		err := node.Do(func() error {
			before := childCPU()
			start := time.Now()
			svc, err := dataplane.FromKubernetes(kubeSvcs[i], []*discoveryv1.EndpointSlice{es})
			if err != nil {
				return err
			}
			if err := dp.Update(ctx, svc); err != nil {
				return err
			}
			tCommit = time.Since(start)
			tCPU = childCPU() - before
			if c >= readBack {
				return nil
			}
			// Read the Service's endpoint elements back from the kernel.
			vip := lbIP(i).String()
			out, err := exec.Command("nft", "get", "element", "inet", "portico", "lb-endpoints-tcp-v4",
				"{ "+vip+" . 80 . 0, "+vip+" . 80 . 1 }").CombinedOutput()
			if err != nil {
				return fmt.Errorf("reading back: %w: %s", err, out)
			}
			if !strings.Contains(string(out), newIP+" . 8080") {
				return fmt.Errorf("change %d: new endpoint %s not in the kernel's map:\n%s", c, newIP, out)
			}
			tLive = time.Since(start)
			return nil
		})
		if err != nil {
			return err
		}
		slicesOf[i] = es
		commit = append(commit, tCommit)
		if c < readBack {
			live = append(live, tLive)
		}
		latest[i] = newIP
		cpu = append(cpu, tCPU)
	}
	fmt.Printf("endpoint change to committed transaction: p50=%v p99=%v max=%v\n", pct(commit, 50), pct(commit, 99), pct(commit, 100))
	fmt.Printf("CPU time of the nft process per change:   p50=%v p99=%v max=%v\n", pct(cpu, 50), pct(cpu, 99), pct(cpu, 100))
	fmt.Printf("change to rule read back (first %d):     p50=%v p99=%v max=%v\n", readBack, pct(live, 50), pct(live, 99), pct(live, 100))
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average during the run: %s", load)

	out, err := node.Command("nft", "list", "map", "inet", "portico", "lb-endpoints-tcp-v4").Output()
	if err != nil {
		return fmt.Errorf("listing endpoints: %w", err)
	}
	for i, ip := range latest {
		vip := lbIP(i).String()
		if !strings.Contains(string(out), vip+" . 80 . 0 : "+ip+" . 8080") && !strings.Contains(string(out), vip+" . 80 . 1 : "+ip+" . 8080") {
			return fmt.Errorf("service %d: endpoint %s not in the kernel's map", i, ip)
		}
	}
	fmt.Printf("all %d changed services verified in the kernel's endpoint map\n", len(latest))
	if err := node.Do(func() error { return dp.Cleanup(ctx) }); err != nil {
		return err
	}
	fmt.Printf("programming: services=%d p99_ms=%d full_sync_ms=%d\n", n, pct(commit, 99).Milliseconds(), fullSync.Milliseconds())
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	idx := (len(s)*p + 99) / 100
	if idx < 1 {
		idx = 1
	}
	return s[idx-1].Round(10 * time.Microsecond)
}

// childCPU is the user+system CPU time of this process's waited-for
// children (the nft commands knftables runs).
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
