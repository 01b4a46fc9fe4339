package pricing

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// RefresherOptions configure a Refresher.
type RefresherOptions struct {
	// Sources are the live price APIs, at most one per product kind.
	Sources []Source
	// Currency the prices must be in; default USD.
	Currency string
	// Interval between refreshes of every (kind, region) in use; default
	// 6 hours. List prices change a few times a year.
	Interval time.Duration
	// StaleAfter marks live prices stale when the API has not given a
	// usable answer for this long; default 3 × Interval.
	StaleAfter time.Duration
	// Timeout bounds one Fetch; default 1 minute.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnError hears about every failed fetch (to log it).
	OnError func(kind, region string, err error)
}

// Refresher prices load balancers from live price APIs: it fetches each
// (kind, region) a load balancer asks for on a schedule and caches the
// answer. Precedence, per load balancer:
//
//  1. a price ConfigMap entry for the kind and region (negotiated rates win
//     over list prices);
//  2. the last good live prices, Source "live:<api>" with FetchedAt, marked
//     Stale after StaleAfter; when the API's latest answer was bad data
//     (no price for a SKU, another currency, malformed), the last good
//     prices are kept and returned together with the *Error, so that the
//     Priced condition is False with the reason but the cost is not lost;
//  3. with no good live prices yet: the API unreachable or refusing (or not
//     asked yet) falls back to the embedded catalog, Source "embedded:...",
//     with SourceError saying why; bad data with nothing good to keep is an
//     error and no cost. Never a zero.
//
// It is a controllers.Pricer and safe for concurrent use.
type Refresher struct {
	live      *Live
	templates *Catalog
	sources   map[string]Source
	opts      RefresherOptions

	mu    sync.Mutex
	state map[quoteKey]*quoteState
	kick  chan struct{}
}

type quoteKey struct{ kind, region, tier string }

type quoteState struct {
	good      *compiled
	currency  string
	fetchedAt time.Time
	lastErr   error // of the latest fetch; nil after a good one
	fetched   bool  // a fetch has completed (well or not)
}

// NewRefresher prices through live's catalog (embedded data and ConfigMap)
// and the live sources of opts.
func NewRefresher(live *Live, opts RefresherOptions) (*Refresher, error) {
	if opts.Currency == "" {
		opts.Currency = "USD"
	}
	if !currencyPattern.MatchString(opts.Currency) {
		return nil, fmt.Errorf("currency %q: want an ISO 4217 code such as USD", opts.Currency)
	}
	if opts.Interval <= 0 {
		opts.Interval = 6 * time.Hour
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 3 * opts.Interval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tmpl, err := Load(live.base)
	if err != nil {
		return nil, err
	}
	r := &Refresher{live: live, templates: tmpl, sources: map[string]Source{}, opts: opts,
		state: map[quoteKey]*quoteState{}, kick: make(chan struct{}, 1)}
	for _, s := range opts.Sources {
		if _, dup := r.sources[s.Kind()]; dup {
			return nil, fmt.Errorf("two live price sources for %s", s.Kind())
		}
		r.sources[s.Kind()] = s
	}
	return r, nil
}

// Price implements controllers.Pricer. See Refresher for the precedence. A
// non-nil cost together with an error is a last good price kept while the
// source gives bad data.
func (r *Refresher) Price(class string, in providers.CostInputs) (*v1alpha1.CostStatus, error) {
	cat, err := r.live.current()
	if err != nil {
		return nil, err
	}
	src, ok := r.sources[in.Kind]
	if !ok {
		return cat.Price(class, in)
	}
	if err := checkInputs(class, in); err != nil {
		return nil, err
	}
	e, lookupErr := cat.lookup(in.Kind, in.Region, in.Tier)
	if lookupErr == nil && isOverride(e) {
		return priceEntry(in, e)
	}
	st := r.demand(quoteKey{in.Kind, in.Region, in.Tier})
	if st.good == nil {
		if st.lastErr != nil && isDataError(st.lastErr) {
			return nil, st.lastErr
		}
		if lookupErr != nil {
			if st.lastErr != nil {
				return nil, errorf(ReasonRegionNotPriced, "%v; live prices from %s unavailable: %v", lookupErr, src.Name(), st.lastErr)
			}
			return nil, errorf(ReasonRegionNotPriced, "%v; live prices from %s not fetched yet", lookupErr, src.Name())
		}
		cost, err := priceEntry(in, e)
		if err != nil {
			return nil, err
		}
		if st.lastErr != nil {
			cost.SourceError = fmt.Sprintf("%s: %v", src.Name(), st.lastErr)
		} else {
			cost.SourceError = src.Name() + ": not fetched yet"
		}
		return cost, nil
	}
	cost, err := priceEntry(in, &entry{compiled: st.good, currency: st.currency, source: "live:" + src.Name()})
	if err != nil {
		return nil, err
	}
	cost.FetchedAt = &metav1.Time{Time: st.fetchedAt.UTC().Truncate(time.Second)}
	cost.Stale = r.opts.Now().Sub(st.fetchedAt) > r.opts.StaleAfter
	if st.lastErr != nil {
		cost.SourceError = fmt.Sprintf("%s: %v", src.Name(), st.lastErr)
		if isDataError(st.lastErr) {
			return cost, st.lastErr
		}
	}
	return cost, nil
}

func isOverride(e *entry) bool { return strings.HasPrefix(e.source, "configmap:") }

// demand returns a copy of the state of k, registering k (and asking Run
// for a fetch) the first time.
func (r *Refresher) demand(k quoteKey) quoteState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.state[k]
	if !ok {
		st = &quoteState{}
		r.state[k] = st
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	return *st
}

// Refresh fetches every (kind, region) in use now, or only those never
// fetched when onlyNew is set; it returns the failures by "kind/region".
func (r *Refresher) Refresh(ctx context.Context, onlyNew bool) map[string]error {
	r.mu.Lock()
	var keys []quoteKey
	for k, st := range r.state {
		if !onlyNew || !st.fetched {
			keys = append(keys, k)
		}
	}
	r.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	failed := map[string]error{}
	for _, k := range keys {
		if err := r.refreshOne(ctx, k); err != nil {
			failed[k.kind+"/"+k.region] = err
			if r.opts.OnError != nil {
				r.opts.OnError(k.kind, k.region, err)
			}
		}
	}
	return failed
}

func (r *Refresher) refreshOne(ctx context.Context, k quoteKey) error {
	src := r.sources[k.kind]
	tmpl, ok := r.templates.template(k.kind, k.tier)
	var good *compiled
	var err error
	if !ok {
		err = errorf(ReasonProductNotPriced, "no price data describes product %q", k.kind)
	} else {
		fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		var q *Quote
		q, err = src.Fetch(fctx, k.region, r.opts.Currency)
		cancel()
		if err == nil {
			good, err = overlay(tmpl.compiled, q, r.opts.Currency, src.Name())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state[k]
	st.fetched = true
	st.lastErr = err
	if err == nil {
		st.good, st.currency, st.fetchedAt = good, r.opts.Currency, r.opts.Now()
	}
	return err
}

// Run refreshes every Interval, and fetches a newly demanded (kind, region)
// at once, until ctx ends. It has the shape of a manager.RunnableFunc body.
func (r *Refresher) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Refresh(ctx, false)
		case <-r.kick:
			r.Refresh(ctx, true)
		}
	}
}
