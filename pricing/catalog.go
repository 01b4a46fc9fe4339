// Package pricing prices load balancers. Providers report what they built as
// providers.CostInputs (a product kind, a region, counted units); a Catalog
// turns those into a v1alpha1.CostStatus from dated list prices: the files
// embedded in data/, optionally overridden from a ConfigMap. All arithmetic
// is exact decimal (math/big.Rat); no float reaches the API.
//
// A load balancer the catalog cannot price gets an *Error with a Reason
// (RegionNotPriced, UnitNotPriced, ...), never a silent zero: a zero cost
// comes only from price data that says zero.
package pricing

import (
	"embed"
	"fmt"
	"io/fs"
	"math/big"
	"path"
	"sort"
	"strings"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

//go:embed data/*.yaml
var embedded embed.FS

// Embedded returns the price files compiled into the binary, parsed and
// validated, in file name order. Their source is "embedded:<name>".
func Embedded() ([]*File, error) {
	return parseFS(embedded, "data")
}

func parseFS(fsys fs.FS, dir string) ([]*File, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading embedded price data: %w", err)
	}
	var files []*File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading embedded price data: %w", err)
		}
		f, err := Parse(data, "embedded:"+e.Name())
		if err != nil {
			return nil, err
		}
		if f.Name == "" {
			return nil, invalidf("embedded:%s: no name", e.Name())
		}
		f.source = "embedded:" + f.Name
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, invalidf("no embedded price files")
	}
	return files, nil
}

// Catalog prices load balancers. It is immutable once loaded and safe for
// concurrent use.
type Catalog struct {
	entries map[entryKey]*entry
}

type entryKey struct{ kind, region, tier string }

type entry struct {
	*compiled
	currency string
	source   string
}

// Load builds a catalog from base files (usually Embedded()) and overrides
// (usually one ParseConfigMap). An override entry replaces the base entry
// of the same kind, region and tier, and adds those the base lacks. Two base
// files pricing the same entry are an error.
func Load(base []*File, overrides ...*File) (*Catalog, error) {
	c := &Catalog{entries: map[entryKey]*entry{}}
	for _, f := range base {
		if err := c.add(f, false); err != nil {
			return nil, err
		}
	}
	for _, f := range overrides {
		if f == nil {
			continue
		}
		if err := c.add(f, true); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Default loads the embedded price data alone.
func Default() (*Catalog, error) {
	files, err := Embedded()
	if err != nil {
		return nil, err
	}
	return Load(files)
}

func (c *Catalog) add(f *File, override bool) error {
	source := f.source
	if source == "" {
		// Built in code rather than by Parse: validate here.
		if err := f.validate(); err != nil {
			return invalidf("%s: %v", f.Name, err)
		}
		source = "file:" + f.Name
	}
	for _, p := range f.Products {
		for _, rp := range p.Prices {
			cp, err := compileRegionPrice(rp)
			if err != nil {
				return invalidf("%s: product %s: %v", source, p.Kind, err)
			}
			for _, r := range rp.Regions {
				k := entryKey{kind: p.Kind, region: r, tier: rp.Tier}
				if prev, dup := c.entries[k]; dup && !override {
					return invalidf("%s and %s both price %s in region %q tier %q", prev.source, source, p.Kind, r, rp.Tier)
				}
				c.entries[k] = &entry{compiled: cp, currency: f.Currency, source: source}
			}
		}
	}
	return nil
}

// lookup finds the entry for kind in region and tier, falling back to the
// tier-less entry and then to the "*" region.
func (c *Catalog) lookup(kind, region, tier string) (*entry, error) {
	candidates := []entryKey{{kind, region, tier}, {kind, region, ""}, {kind, "*", tier}, {kind, "*", ""}}
	if tier == "" {
		candidates = []entryKey{{kind, region, ""}, {kind, "*", ""}}
	}
	for _, k := range candidates {
		if k.region == "" {
			continue
		}
		if e, ok := c.entries[k]; ok {
			return e, nil
		}
	}
	var regions []string
	for k := range c.entries {
		if k.kind == kind {
			regions = append(regions, k.region)
		}
	}
	if len(regions) == 0 {
		return nil, errorf(ReasonProductNotPriced, "no price data for product %q", kind)
	}
	where := fmt.Sprintf("region %q", region)
	if tier != "" {
		where += fmt.Sprintf(" (tier %q)", tier)
	}
	return nil, errorf(ReasonRegionNotPriced, "no price for %s in %s; priced regions: %s (add the region to the price ConfigMap, see docs/cost.md)",
		kind, where, strings.Join(uniqueSorted(regions), ", "))
}

// Price prices the cost inputs a provider of class reported. The result's
// Hourly is the sum of its Breakdown; Monthly is Hourly times 730. A
// *Catalog is a controllers.Pricer.
func (c *Catalog) Price(class string, in providers.CostInputs) (*v1alpha1.CostStatus, error) {
	if err := checkInputs(class, in); err != nil {
		return nil, err
	}
	e, err := c.lookup(in.Kind, in.Region, in.Tier)
	if err != nil {
		return nil, err
	}
	return priceEntry(in, e)
}

func checkInputs(class string, in providers.CostInputs) error {
	if in.Kind == "" {
		return errorf(ReasonCostInputsInvalid, "the %s provider reported no cost inputs", class)
	}
	for _, u := range sortedKeys(in.Units) {
		if n := in.Units[u]; n < 0 || n > maxUnits {
			return errorf(ReasonCostInputsInvalid, "the %s provider reported %d %s; want 0 to %d", class, n, u, maxUnits)
		}
	}
	return nil
}

// template returns an entry of kind (and tier) from any region, preferring
// region "*": the shape of the product's price list (which units it has,
// which are free, which come in a first block) that a live quote fills
// with current prices.
func (c *Catalog) template(kind, tier string) (*entry, bool) {
	var keys []entryKey
	for k := range c.entries {
		if k.kind == kind && (k.tier == tier || k.tier == "") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, false
	}
	rank := func(k entryKey) string {
		r := "1"
		if k.tier == tier {
			r = "0"
		}
		if k.region == "*" {
			return r + "0"
		}
		return r + "1" + k.region
	}
	sort.Slice(keys, func(i, j int) bool { return rank(keys[i]) < rank(keys[j]) })
	return c.entries[keys[0]], true
}

// priceEntry prices in with one entry.
func priceEntry(in providers.CostInputs, e *entry) (*v1alpha1.CostStatus, error) {
	for _, u := range sortedKeys(in.Units) {
		if _, ok := e.units[u]; !ok && in.Units[u] > 0 {
			return nil, errorf(ReasonUnitNotPriced, "%s reports %d %s, which %s does not price for %s", in.Kind, in.Units[u], u, e.source, in.Kind)
		}
	}

	measured := measuredUnits(in.Usage)
	total, fixed := new(big.Rat), new(big.Rat)
	var items []v1alpha1.CostItem
	line := func(item string, qty int, hourly *big.Rat) {
		total.Add(total, hourly)
		if !strings.HasSuffix(item, "-estimate") {
			fixed.Add(fixed, hourly)
		}
		items = append(items, v1alpha1.CostItem{Item: item, Quantity: int32(qty), Hourly: FormatAmount(hourly)})
	}
	if e.hourly != nil {
		line(e.hourlyItem, 1, e.hourly)
	}
	for _, name := range sortedKeys(e.units) {
		u := e.units[name]
		qty, reported := in.Units[name]
		suffix := ""
		if !reported && u.estimated {
			if measured[name] {
				continue // the usage part prices what was measured
			}
			qty, suffix = u.estimate, "-estimate"
		}
		if qty == 0 {
			continue
		}
		perUnit := func(n int) *big.Rat { return new(big.Rat).Mul(u.hourly, big.NewRat(int64(n), 1)) }
		if u.firstBlock == 0 || u.marginal {
			line(u.item+suffix, qty, perUnit(qty))
			continue
		}
		line(u.blockItem()+suffix, min(qty, u.firstBlock), new(big.Rat).Set(u.blockPrice))
		if extra := qty - u.firstBlock; extra > 0 {
			line(u.item+"-additional"+suffix, extra, perUnit(extra))
		}
	}
	var usage *v1alpha1.UsageCost
	if in.Usage != nil {
		var usageHourly *big.Rat
		var err error
		usage, usageHourly, err = priceUsage(in.Kind, in.Usage, e)
		if err != nil {
			return nil, err
		}
		total = new(big.Rat).Add(fixed, usageHourly)
	}
	return &v1alpha1.CostStatus{
		Hourly:    FormatAmount(total),
		Monthly:   FormatAmount(Monthly(total)),
		Currency:  e.currency,
		Source:    e.source,
		Region:    in.Region,
		Basis:     e.basis,
		Breakdown: items,
		Fixed:     FormatAmount(fixed),
		Usage:     usage,
	}, nil
}

// maxUnits bounds a reported unit count; no load balancer has a million
// listeners, so more is a provider bug, not a bill.
const maxUnits = 1_000_000

func uniqueSorted(s []string) []string {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return sortedKeys(m)
}
