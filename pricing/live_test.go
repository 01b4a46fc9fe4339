package pricing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

func TestLiveFollowsTheConfigMap(t *testing.T) {
	ctx := context.Background()
	base, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	live, err := pricing.NewLive(base)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().Build()
	key := types.NamespacedName{Namespace: "portico-system", Name: "portico-prices"}
	local := providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": 2}}

	priceOf := func(t *testing.T) (string, error) {
		t.Helper()
		got, err := live.Price("lb.portico.dev/local", local)
		if err != nil {
			return "", err
		}
		return got.Hourly + " " + got.Currency + " " + got.Source, nil
	}
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("no ConfigMap: embedded prices", func(t *testing.T) {
		if err := live.Refresh(ctx, c, key); err != nil {
			t.Fatal(err)
		}
		if got, err := priceOf(t); err != nil || got != "0 USD embedded:local-2026-11-21" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	cm := priceConfigMap(onPremPrices)
	step("ConfigMap created: its prices", func(t *testing.T) {
		if err := c.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		if err := live.Refresh(ctx, c, key); err != nil {
			t.Fatal(err)
		}
		if got, err := priceOf(t); err != nil || got != "0.003 EUR configmap:portico-system/portico-prices" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	step("ConfigMap broken: every price fails with PriceDataInvalid", func(t *testing.T) {
		cm.Data[pricing.ConfigMapKey] = "asOf: \"2026-11-01\"\ncurrency: EUR\nproducts:\n- kind: local-address\n  prices:\n  - regions: [\"*\"]\n    units:\n      addresses: {hourly: \"-0.01\"}\n"
		if err := c.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
		err := live.Refresh(ctx, c, key)
		var pe *pricing.Error
		if !errors.As(err, &pe) || pe.Reason != pricing.ReasonPriceDataInvalid {
			t.Fatalf("Refresh: %v, want PriceDataInvalid", err)
		}
		_, err = priceOf(t)
		if !errors.As(err, &pe) || pe.Reason != pricing.ReasonPriceDataInvalid {
			t.Errorf("Price after a broken ConfigMap: %v, want PriceDataInvalid rather than old or embedded prices", err)
		}
		// Unchanged, the broken ConfigMap is not re-reported but still fails prices.
		if err := live.Refresh(ctx, c, key); err != nil {
			t.Errorf("second Refresh of the same version: %v", err)
		}
		if _, err := priceOf(t); err == nil {
			t.Error("a price despite the broken ConfigMap")
		}
	})
	step("ConfigMap deleted: embedded prices again", func(t *testing.T) {
		if err := c.Delete(ctx, cm); err != nil {
			t.Fatal(err)
		}
		if err := live.Refresh(ctx, c, key); err != nil {
			t.Fatal(err)
		}
		if got, err := priceOf(t); err != nil || got != "0 USD embedded:local-2026-11-21" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	step("Run polls until its context ends", func(t *testing.T) {
		fresh := priceConfigMap(onPremPrices)
		if err := c.Create(ctx, fresh); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- live.Run(rctx, c, key, 10*time.Millisecond, func(err error) { t.Errorf("Run reported %v", err) })
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if got, _ := priceOf(t); got == "0.003 EUR configmap:portico-system/portico-prices" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("Run did not pick up the ConfigMap")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
}
