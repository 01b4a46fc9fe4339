package pricing

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// Live prices with the embedded data overridden by a ConfigMap that may
// change, appear or disappear while the operator runs. While the ConfigMap
// holds invalid price data, every Price call fails with PriceDataInvalid, so
// each load balancer shows the problem in its condition instead of a cost
// from prices the operator was told not to use. It is a controllers.Pricer
// and safe for concurrent use.
type Live struct {
	base []*File

	mu      sync.RWMutex
	catalog *Catalog
	err     error
	version string // resourceVersion of the ConfigMap in use, "" for none
}

// NewLive starts with the base files (usually Embedded()) and no override.
func NewLive(base []*File) (*Live, error) {
	cat, err := Load(base)
	if err != nil {
		return nil, err
	}
	return &Live{base: base, catalog: cat}, nil
}

// current is the catalog in use, or the error of invalid ConfigMap data.
func (l *Live) current() (*Catalog, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.catalog, l.err
}

// Price implements controllers.Pricer.
func (l *Live) Price(class string, in providers.CostInputs) (*v1alpha1.CostStatus, error) {
	cat, err := l.current()
	if err != nil {
		return nil, err
	}
	return cat.Price(class, in)
}

// SetOverride switches to cm's prices, or back to the base alone when cm is
// nil. Invalid data is returned and also makes Price fail until a valid
// ConfigMap (or none) replaces it.
func (l *Live) SetOverride(cm *corev1.ConfigMap) error {
	cat, err := l.build(cm)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.version = ""
	if cm != nil {
		l.version = cm.ResourceVersion
	}
	if err != nil {
		l.catalog, l.err = nil, err
		return err
	}
	l.catalog, l.err = cat, nil
	return nil
}

func (l *Live) build(cm *corev1.ConfigMap) (*Catalog, error) {
	if cm == nil {
		return Load(l.base)
	}
	f, err := ParseConfigMap(cm)
	if err != nil {
		return nil, err
	}
	return Load(l.base, f)
}

// Refresh reads the ConfigMap at key through r and applies it; a missing
// ConfigMap means the base prices alone. Other read errors leave the
// current prices in place and are returned.
func (l *Live) Refresh(ctx context.Context, r client.Reader, key types.NamespacedName) error {
	cm := &corev1.ConfigMap{}
	switch err := r.Get(ctx, key, cm); {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return fmt.Errorf("reading price ConfigMap %s: %w", key, err)
	}
	l.mu.RLock()
	unchanged := l.version != "" && cm != nil && cm.ResourceVersion == l.version
	l.mu.RUnlock()
	if unchanged {
		return nil
	}
	return l.SetOverride(cm)
}

// Run refreshes from the ConfigMap every interval until ctx ends; onError,
// when set, hears about read failures and invalid price data (to log them
// or record an Event). It has the shape of a manager.RunnableFunc body:
//
//	mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
//		return live.Run(ctx, mgr.GetAPIReader(), key, 30*time.Second, logErr)
//	}))
func (l *Live) Run(ctx context.Context, r client.Reader, key types.NamespacedName, interval time.Duration, onError func(error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := l.Refresh(ctx, r, key); err != nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
