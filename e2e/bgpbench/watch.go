package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"
)

// fibWatch follows the router's kernel routes learned by BGP through a
// netlink subscription in its namespace and records, per address, the
// first time its next hops satisfy match. A subscription times each
// change as the kernel reports it, where reading the whole table every
// 10 ms added up to 10 ms (and the cost of 100 dumps a second of 1,000
// routes) to every measurement. If the subscription fails (a full socket
// buffer), it is opened again with a fresh listing.
type fibWatch struct {
	match func(a netip.Addr, hops []netip.Addr) bool

	mu      sync.Mutex
	cur     map[netip.Addr][]netip.Addr
	first   map[netip.Addr]time.Time
	restart int
	err     error
	done    chan struct{}
	stopped chan struct{}
}

func (b *bench) watchFIB(match func(netip.Addr, []netip.Addr) bool) (*fibWatch, error) {
	h, err := netns.GetFromName(b.router.Host.NS)
	if err != nil {
		return nil, err
	}
	f := &fibWatch{match: match, cur: map[netip.Addr][]netip.Addr{}, first: map[netip.Addr]time.Time{},
		done: make(chan struct{}), stopped: make(chan struct{})}
	ch, err := f.subscribe(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	go func() {
		defer close(f.stopped)
		defer h.Close()
		for {
			for u := range ch {
				f.update(u, time.Now())
			}
			select {
			case <-f.done:
				return
			default:
			}
			f.mu.Lock()
			f.restart++
			f.cur = map[netip.Addr][]netip.Addr{}
			f.mu.Unlock()
			for {
				if ch, err = f.subscribe(h); err == nil {
					break
				}
				select {
				case <-f.done:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}()
	return f, nil
}

func (f *fibWatch) subscribe(h netns.NsHandle) (chan netlink.RouteUpdate, error) {
	ch := make(chan netlink.RouteUpdate, 8192)
	err := netlink.RouteSubscribeWithOptions(ch, f.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ListExisting: true, ReceiveBufferSize: 32 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
		},
	})
	return ch, err
}

func (f *fibWatch) update(u netlink.RouteUpdate, now time.Time) {
	r := u.Route
	if r.Protocol != unix.RTPROT_BGP || r.Dst == nil {
		return
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return
	}
	a = a.Unmap()
	var hops []netip.Addr
	if g, ok := netip.AddrFromSlice(r.Gw); ok && r.Gw != nil {
		hops = append(hops, g.Unmap())
	}
	for _, nh := range r.MultiPath {
		if g, ok := netip.AddrFromSlice(nh.Gw); ok && nh.Gw != nil {
			hops = append(hops, g.Unmap())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case u.Type == unix.RTM_DELROUTE:
		delete(f.cur, a)
		hops = nil
	case u.NlFlags&unix.NLM_F_APPEND != 0:
		// An IPv6 next hop appended to a route.
		hops = append(f.cur[a], hops...)
		f.cur[a] = hops
	default:
		f.cur[a] = hops
	}
	if _, ok := f.first[a]; !ok && f.match(a, hops) {
		f.first[a] = now
	}
}

// seen returns the first time each address matched.
func (f *fibWatch) seen() map[netip.Addr]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.first)
}

// stop ends the subscription and says how often it was opened again.
func (f *fibWatch) stop() int {
	close(f.done)
	<-f.stopped
	return f.restart
}

// addressWatch records when each address first appears in the status of a
// Service of one set. It watches through client-go's RetryWatcher, which
// resumes from the last resource version when the apiserver ends the watch
// (it ends a watcher that falls behind; a plain watch then left the
// benchmark waiting for addresses it would never see).
type addressWatch struct {
	mu    sync.Mutex
	first map[netip.Addr]time.Time
	stop  func()
}

func (w *addressWatch) seen() map[netip.Addr]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.first)
}

type servicesWatcher struct {
	cs    kubernetes.Interface
	label string
}

func (s servicesWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.LabelSelector = s.label
	return s.cs.CoreV1().Services(ns).Watch(ctx, o)
}

func (b *bench) watchAddresses(set string) (*addressWatch, error) {
	cs, err := kubernetes.NewForConfig(b.c.Env.Config)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sw := servicesWatcher{cs: cs, label: "set=" + set}
	list, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: sw.label})
	if err != nil {
		cancel()
		return nil, err
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, sw)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	w := &addressWatch{first: map[netip.Addr]time.Time{}, stop: func() { rw.Stop(); cancel() }}
	go func() {
		for ev := range rw.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			for _, in := range s.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(in.IP); err == nil {
					if _, ok := w.first[a]; !ok {
						w.first[a] = now
					}
				}
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// hops returns each address's current next hops.
func (f *fibWatch) hops() map[netip.Addr][]netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.cur)
}
