package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/providers/memory"
)

// logOperatorWrites makes the operators this test starts log their writes
// into log (under mu); done as in logRT.
func logOperatorWrites(t *testing.T, mu *sync.Mutex, log *[]string, done func(write string)) {
	t.Helper()
	cfg := rest.CopyConfig(operatorConfig)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return logRT{rt: rt, mu: mu, log: log, done: done} }
	old := operatorConfig
	operatorConfig = cfg
	t.Cleanup(func() { operatorConfig = old })
}

// logRT logs the operator's writes ("PATCH /api/v1/..."), in the order it
// sends them; done, when set, is called with each once its response came.
type logRT struct {
	rt   http.RoundTripper
	mu   *sync.Mutex
	log  *[]string
	done func(write string)
}

func (l logRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		return l.rt.RoundTrip(r)
	}
	w := r.Method + " " + r.URL.Path
	l.mu.Lock()
	*l.log = append(*l.log, w)
	l.mu.Unlock()
	resp, err := l.rt.RoundTrip(r)
	if l.done != nil && err == nil {
		l.done(w)
	}
	return resp, err
}

// TestCreateWrites: a new Service costs one write per guarantee: the
// finalizer, the record (naming the class before any address), the address
// on the Service (before the record's status), the record's status once, and
// one Event (Ensured). A Service created before its pods gets no NoEndpoints
// Warning: its Serving condition says so (TestServingEvent); that Event was
// the sixth write. The second reconcile, which the finalizer patch triggers,
// writes nothing.
func TestCreateWrites(t *testing.T) {
	var mu sync.Mutex
	var log []string
	logOperatorWrites(t, &mu, &log, nil)
	p := memory.New(memory.Options{ClusterID: "test"})
	withOperator(t, p)
	ns := namespace(t)
	time.Sleep(2 * time.Second)
	mu.Lock()
	log = nil
	mu.Unlock()
	svc := gen.Service(ns, "w", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, svc)
	waitReady(t, svc)
	time.Sleep(3 * time.Second)
	mu.Lock()
	writes := slices.Clone(log)
	mu.Unlock()
	count := map[string]int{}
	first := map[string]int{}
	for i, w := range writes {
		kind := w[:strings.Index(w, " ")]
		switch path := w[len(kind)+1:]; {
		case strings.HasSuffix(path, "/services/w"):
			kind += " service"
		case strings.HasSuffix(path, "/services/w/status"):
			kind += " service status"
		case strings.HasSuffix(path, "/loadbalancers"):
			kind += " record"
		case strings.HasSuffix(path, "/loadbalancers/w/status"):
			kind += " record status"
		case strings.HasSuffix(path, "/events"):
			kind += " event"
		}
		if _, ok := first[kind]; !ok {
			first[kind] = i
		}
		count[kind]++
	}
	want := map[string]int{"PATCH service": 1, "POST record": 1, "PATCH service status": 1, "PATCH record status": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d x %s, want %d", count[k], k, n)
		}
	}
	if count["POST event"] > 1 || len(writes) > 5 {
		t.Errorf("%d writes, %d of them Events; want at most 5 and 1:\n%s", len(writes), count["POST event"], strings.Join(writes, "\n"))
	}
	if first["PATCH service status"] > first["PATCH record status"] {
		t.Errorf("the record's status was written before the Service's address:\n%s", strings.Join(writes, "\n"))
	}
	// A backend standing for a cloud needs no record before its call: the
	// finalizer patch names the class (lb.portico.dev/built-class) until the
	// record exists, so the record follows the address and a burst's
	// addresses cost two writes each, not three.
	if first["POST record"] < first["PATCH service status"] {
		t.Errorf("the record was created before the Service's address:\n%s", strings.Join(writes, "\n"))
	}
	deleteAndWait(t, svc)
}

// TestAddressesBeforeRecords: when many Services wait (the operator starts
// after an upgrade, a burst), their addresses go out before the records'
// status: the record's status and the Ensured Event follow in a pass of lower
// priority, so the user-visible address waits for no bookkeeping of other
// Services. One worker makes the order strict. Before, every Service's
// record status was written in the reconcile that wrote its address.
func TestAddressesBeforeRecords(t *testing.T) {
	ns := namespace(t)
	const n = 20
	var svcs []*corev1.Service
	for i := range n {
		svc := gen.Service(ns, fmt.Sprintf("s%d", i), gen.WithClass(memoryClass), gen.ForAPI())
		create(t, svc)
		svcs = append(svcs, svc)
	}
	var mu sync.Mutex
	var log []string
	logOperatorWrites(t, &mu, &log, nil)
	withOperator(t, memory.New(memory.Options{ClusterID: "test"}), func(o *operator.Options) { o.Workers = 1 })
	prefix := "/namespaces/" + ns + "/"
	writes := afterRecords(t, &mu, &log, prefix, n)
	recordsBefore := 0
	for _, w := range beforeLastAddress(writes, prefix) {
		if strings.Contains(w, prefix+"loadbalancers/") && strings.HasSuffix(w, "/status") {
			recordsBefore++
		}
	}
	if recordsBefore > n/4 {
		t.Errorf("%d of %d record status writes went out before the last Service's address:\n%s", recordsBefore, n, strings.Join(writes, "\n"))
	}
	for _, svc := range svcs {
		waitReady(t, svc)
	}
}

// TestBurstAddressesBeforeRecords: Services arriving in a stream, each next
// one created as soon as one got its address (as in bench-reconcile's
// burst), get their addresses before any record's status or Ensured Event
// is written. The priority of the record pass cannot see to that alone:
// the Services awaiting an address are mostly in the workers, not in the
// queue, so a free worker took a record pass (or an EndpointSlice event
// brought one forward) and its writes competed with the addresses. Now a
// record pass waits while any other reconcile is on its way to a first
// address.
func TestBurstAddressesBeforeRecords(t *testing.T) {
	ns := namespace(t)
	prefix := "/namespaces/" + ns + "/"
	const n, inFlight = 120, 8
	var mu sync.Mutex
	var log []string
	addressed := map[string]chan struct{}{}
	for i := range n {
		addressed[fmt.Sprintf("b%d", i)] = make(chan struct{})
	}
	done := func(w string) {
		name, ok := strings.CutPrefix(w, "PATCH /api/v1"+prefix+"services/")
		if !ok {
			return
		}
		if name, ok = strings.CutSuffix(name, "/status"); !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ch, ok := addressed[name]; ok {
			close(ch)
			delete(addressed, name)
		}
	}
	logOperatorWrites(t, &mu, &log, done)
	// A loaded machine can stall the stream of Creates for longer than the
	// default quiet period, which would end the burst as the operator sees
	// it; the order is what is tested here.
	withOperator(t, memory.New(memory.Options{ClusterID: "test"}), func(o *operator.Options) {
		o.Workers = 4
		o.RecordPassQuiet = 5 * time.Second
	})

	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i := range n {
		svc := gen.Service(ns, fmt.Sprintf("b%d", i), gen.WithClass(memoryClass), gen.ForAPI())
		mu.Lock()
		ch := addressed[svc.Name]
		mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := env.Client.Create(context.Background(), svc); err != nil {
				t.Errorf("creating %s: %v", svc.Name, err)
				return
			}
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				t.Errorf("%s: no address within 30s", svc.Name)
			}
		}()
	}
	wg.Wait()
	streamed := time.Now()
	writes := afterRecords(t, &mu, &log, prefix, n)
	before := 0
	for _, w := range beforeLastAddress(writes, prefix) {
		if strings.Contains(w, prefix+"loadbalancers/") && strings.HasSuffix(w, "/status") || strings.Contains(w, prefix+"events") {
			before++
		}
	}
	t.Logf("%d of %d record status writes and Ensured Events went out before the last address; the records' status took %s after the last address", before, 2*n, time.Since(streamed))
	if before > n/10 {
		t.Errorf("%d of %d record status writes and Ensured Events went out before the last Service's address:\n%s", before, 2*n, strings.Join(writes, "\n"))
	}
	// The next tests' operators must not inherit these Services.
	for i := range n {
		if err := env.Client.Delete(context.Background(), gen.Service(ns, fmt.Sprintf("b%d", i))); client.IgnoreNotFound(err) != nil {
			t.Error(err)
		}
	}
	eventually(t, 60*time.Second, func() error {
		var list corev1.ServiceList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d Services left", len(list.Items))
		}
		return nil
	})
}

// afterRecords waits until log holds n record status writes under prefix
// ("/namespaces/<ns>/") and returns a copy of it.
func afterRecords(t *testing.T, mu *sync.Mutex, log *[]string, prefix string, n int) []string {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		records := 0
		for _, w := range *log {
			if strings.Contains(w, prefix+"loadbalancers/") && strings.HasSuffix(w, "/status") {
				records++
			}
		}
		if records < n {
			return fmt.Errorf("%d record status writes, want %d", records, n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(*log)
}

// beforeLastAddress returns the writes up to the last Service status write
// under prefix (none if there is none).
func beforeLastAddress(writes []string, prefix string) []string {
	last := -1
	for i, w := range writes {
		if strings.Contains(w, prefix+"services/") && strings.HasSuffix(w, "/status") {
			last = i
		}
	}
	return writes[:last+1]
}
