package controllers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// nodeSet is the cluster's eligible nodes as backends see them, sorted by
// name, with their fingerprint. One set is shared, read-only, by the desired
// state of every Service with externalTrafficPolicy Cluster: at thousands of
// nodes, listing (and copying) every Node and hashing it per reconcile was
// most of the operator's CPU and memory.
type nodeSet struct {
	nodes []providers.Node
	hash  string
}

// nodeSnapshots builds the nodeSet again only after a node event that can
// change it (see nodeHandler); generations make a change that lands while a
// set is being built invalidate that set.
type nodeSnapshots struct {
	gen atomic.Uint64

	mu     sync.Mutex
	cur    *nodeSet
	curGen uint64
	// builds counts rebuilds, for tests.
	builds int
}

// invalidate marks the current set stale; the next get rebuilds it.
func (s *nodeSnapshots) invalidate() { s.gen.Add(1) }

// get returns the current set, rebuilding it from the cache when stale.
func (s *nodeSnapshots) get(ctx context.Context, c client.Reader) (*nodeSet, error) {
	g := s.gen.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.curGen == g {
		return s.cur, nil
	}
	var list corev1.NodeList
	// Read-only: ProviderNode copies what it keeps.
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	set := &nodeSet{}
	for i := range list.Items {
		if n := &list.Items[i]; model.EligibleNode(n) {
			set.nodes = append(set.nodes, model.ProviderNode(n))
		}
	}
	slices.SortFunc(set.nodes, func(a, b providers.Node) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.Marshal(set.nodes)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	set.hash = hex.EncodeToString(sum[:12])
	s.cur, s.curGen = set, g
	s.builds++
	return set, nil
}
