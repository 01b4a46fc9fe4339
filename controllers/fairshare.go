package controllers

import (
	"sync"
	"time"
)

// fairShareRetry is how soon a Service whose class holds all its workers is
// tried again.
const fairShareRetry = 250 * time.Millisecond

// fairShare caps the workers one class may hold at once, so that a backend
// whose calls hang (a cloud outage, a throttled account) cannot starve the
// other classes. With one class the cap is every worker; with more, half of
// them (at least one). A Service over the cap is requeued, not blocked, so
// the worker goes back to the queue.
type fairShare struct {
	mu   sync.Mutex
	cap  int
	busy map[string]int
}

func newFairShare(workers, classes int) fairShare {
	c := workers
	if classes > 1 {
		c = max(1, workers/2)
	}
	return fairShare{cap: c, busy: map[string]int{}}
}

// acquire takes a worker slot for class; ok is false when the class holds
// its share. release returns the slot.
func (f *fairShare) acquire(class string) (release func(), ok bool) {
	if f.cap == 0 || class == "" {
		return func() {}, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[class] >= f.cap {
		return nil, false
	}
	f.busy[class]++
	return func() {
		f.mu.Lock()
		f.busy[class]--
		f.mu.Unlock()
	}, true
}
