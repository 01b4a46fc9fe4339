package azure

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Writes to a shared load balancer are batched. Every Ensure or Delete
// submits its change (a function that edits the load balancer) to the queue
// of that load balancer. The first submitter becomes the batch's leader: it
// waits BatchWindow, then for any write still in flight on that load
// balancer, and then takes every change submitted meanwhile and makes one
// read-modify-write: GET (with the ETag), apply every change, PUT with
// If-Match. A 412 (someone else wrote in between) repeats the cycle on the
// fresh state, so no writer ever overwrites another. A PUT that Azure rejects
// as invalid, or whose operation fails for a reason that is not transient
// (a quota, a conflict of its content), is retried change by change, so one
// broken Service cannot block the others in its batch. An operation that
// fails transiently (InternalServerError, superseded) is a RetryError for
// every change in the batch: they are all requeued, none is failed.

// maxETagAttempts bounds the read-modify-write cycles of one batch.
const maxETagAttempts = 5

// change is one Service's edit of a shared load balancer.
type change struct {
	// remove marks a change that only takes parts away; on a load balancer
	// Portico does not own it succeeds without touching anything.
	remove bool
	// apply edits lb and reports whether it changed anything. It runs again
	// on fresh state after a 412.
	apply func(lb *armnetwork.LoadBalancer) bool
	err   error
}

type batch struct {
	changes []*change
	done    chan struct{}
	lb      *armnetwork.LoadBalancer // after the write; nil when none exists
}

type lbQueue struct {
	run     sync.Mutex // one write in flight per load balancer
	mu      sync.Mutex
	pending *batch
}

// writer batches the writes to the shared load balancers.
type writer struct {
	p      *Provider
	mu     sync.Mutex
	queues map[string]*lbQueue

	writes   atomic.Int64 // load balancer PUTs and DELETEs made
	included atomic.Int64 // changes carried by those writes
}

func (w *writer) queue(name string) *lbQueue {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queues[name]
	if q == nil {
		q = &lbQueue{}
		w.queues[name] = q
	}
	return q
}

// submit applies c to load balancer name, batched with concurrent changes,
// and returns the load balancer as written (nil when none exists).
func (w *writer) submit(ctx context.Context, name string, c *change) (*armnetwork.LoadBalancer, error) {
	q := w.queue(name)
	q.mu.Lock()
	b := q.pending
	leader := b == nil
	if leader {
		b = &batch{done: make(chan struct{})}
		q.pending = b
	}
	b.changes = append(b.changes, c)
	q.mu.Unlock()

	if leader {
		// The batch serves other callers too: a cancelled leader must not
		// fail them, so it runs on a context of its own.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		go func() {
			defer cancel()
			defer close(b.done)
			if wait := w.p.opts.BatchWindow; wait > 0 {
				time.Sleep(wait)
			}
			q.run.Lock()
			defer q.run.Unlock()
			q.mu.Lock()
			if q.pending == b {
				q.pending = nil
			}
			q.mu.Unlock()
			lb, err := w.write(bctx, name, b.changes)
			b.lb = lb
			if err != nil {
				for _, c := range b.changes {
					if c.err == nil {
						c.err = err
					}
				}
			}
		}()
	}
	select {
	case <-b.done:
		return b.lb, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write makes one read-modify-write of load balancer name carrying changes.
// A change's own failure goes into its err; the returned error fails all.
func (w *writer) write(ctx context.Context, name string, changes []*change) (*armnetwork.LoadBalancer, error) {
	p := w.p
	log := logr.FromContextOrDiscard(ctx).WithValues("loadBalancer", name)
	for attempt := 1; ; attempt++ {
		for _, c := range changes {
			c.err = nil
		}
		lb, err := p.getLoadBalancer(ctx, name)
		if err != nil {
			return nil, err
		}
		exists := lb != nil
		if exists && !p.ownsLoadBalancer(lb) {
			for _, c := range changes {
				if !c.remove {
					c.err = &providers.NotOwnedError{Kind: "loadBalancer", ID: p.loadBalancerID(name)}
				}
			}
			return nil, nil
		}
		if !exists {
			lb = p.newLoadBalancer(name)
		}
		changed := false
		for _, c := range changes {
			if c.apply(lb) {
				changed = true
			}
		}
		if !changed {
			if !exists {
				return nil, nil
			}
			return lb, nil
		}
		empty := lb.Properties == nil || len(lb.Properties.FrontendIPConfigurations) == 0
		if !exists && empty {
			return nil, nil
		}

		var header http.Header
		if exists {
			header = http.Header{"If-Match": {deref(lb.Etag)}}
		} else {
			header = http.Header{"If-None-Match": {"*"}}
		}
		hctx := policy.WithHTTPHeader(ctx, header)
		w.writes.Add(1)
		w.included.Add(int64(len(changes)))
		var out *armnetwork.LoadBalancer
		if empty {
			log.V(1).Info("Deleting load balancer, its last frontend is gone")
			err = p.deleteLoadBalancer(hctx, ctx, name)
		} else {
			log.V(1).Info("Writing load balancer", "changes", len(changes), "attempt", attempt)
			out, err = p.putLoadBalancer(hctx, ctx, name, lb)
		}
		switch {
		case err == nil:
			return out, nil
		case isPreconditionFailed(err) && attempt < maxETagAttempts:
			log.V(1).Info("Load balancer changed under us, reading it again", "attempt", attempt)
			continue
		case isPermanent(err) && len(changes) > 1:
			// Invalid, or its operation failed for a reason of its content
			// or a quota: one change may be the cause, so each is written
			// on its own and only the failing ones fail.
			log.V(1).Info("Azure rejected a batch, writing its changes one by one", "changes", len(changes))
			return w.isolate(ctx, name, changes)
		}
		return nil, classify("writing load balancer "+name, err)
	}
}

// isolate writes each change on its own, so that only the invalid ones fail.
func (w *writer) isolate(ctx context.Context, name string, changes []*change) (*armnetwork.LoadBalancer, error) {
	for _, c := range changes {
		single := &change{remove: c.remove, apply: c.apply}
		if _, err := w.write(ctx, name, []*change{single}); err != nil {
			c.err = err
		} else {
			c.err = single.err
		}
	}
	return w.p.getLoadBalancer(ctx, name)
}

// getLoadBalancer returns the load balancer, or nil when it does not exist.
func (p *Provider) getLoadBalancer(ctx context.Context, name string) (*armnetwork.LoadBalancer, error) {
	resp, err := p.lbs.Get(ctx, p.opts.ResourceGroup, name, nil)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, classify("reading load balancer "+name, err)
	}
	return &resp.LoadBalancer, nil
}

// putLoadBalancer starts the PUT on hctx (which carries the ETag header) and
// polls the operation to its end on ctx.
func (p *Provider) putLoadBalancer(hctx, ctx context.Context, name string, lb *armnetwork.LoadBalancer) (*armnetwork.LoadBalancer, error) {
	poller, err := p.lbs.BeginCreateOrUpdate(hctx, p.opts.ResourceGroup, name, *lb, nil)
	if err != nil {
		return nil, err
	}
	resp, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions())
	if err != nil {
		return nil, err
	}
	return &resp.LoadBalancer, nil
}

func (p *Provider) deleteLoadBalancer(hctx, ctx context.Context, name string) error {
	poller, err := p.lbs.BeginDelete(hctx, p.opts.ResourceGroup, name, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(p.pollContext(ctx), p.pollOptions())
	return err
}

// pollContext lets the SDK retry throttled polls (honouring Retry-After):
// the operation runs on in Azure either way, and giving up on a poll would
// only make the next Ensure find the resource busy.
func (p *Provider) pollContext(ctx context.Context) context.Context {
	opts := p.retry
	opts.StatusCodes = append(slices.Clone(opts.StatusCodes), http.StatusTooManyRequests)
	if opts.MaxRetries < 3 {
		opts.MaxRetries = 3
	}
	return policy.WithRetryOptions(ctx, opts)
}

func (p *Provider) pollOptions() *runtime.PollUntilDoneOptions {
	return &runtime.PollUntilDoneOptions{Frequency: p.opts.PollInterval}
}
