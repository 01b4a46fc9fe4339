package pricing

import (
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// File is one price data file: the prices of one or more products, all in
// one currency, as published on one date. The embedded files live in
// data/*.yaml; an operator overrides them with the same format under the key
// ConfigMapKey of a ConfigMap (see docs/cost.md).
type File struct {
	// Name identifies the data in CostStatus.Source ("aws-2026-11-21").
	// Required for embedded files; a ConfigMap is named after itself.
	Name string `json:"name,omitempty"`
	// AsOf is the date (YYYY-MM-DD) the prices were taken from their source.
	AsOf string `json:"asOf"`
	// Currency is the ISO 4217 code of every amount in the file.
	Currency string    `json:"currency"`
	Products []Product `json:"products"`

	// source is what CostStatus.Source says for prices from this file.
	source string
}

// Product prices one CostInputs.Kind.
type Product struct {
	// Kind matches providers.CostInputs.Kind ("aws-nlb", ...).
	Kind string `json:"kind"`
	// SourceURL is the public page the prices were read from.
	SourceURL string `json:"sourceURL,omitempty"`
	// Prices are per region; see RegionPrice.
	Prices []RegionPrice `json:"prices"`
}

// RegionPrice is a product's price list in one or more regions that share
// it, optionally for one tier. Region "*" applies to every region that has
// no entry of its own.
type RegionPrice struct {
	Regions []string `json:"regions"`
	// Tier, when set, restricts the entry to CostInputs.Tier; an entry
	// without a tier applies to every tier that has no entry of its own.
	Tier string `json:"tier,omitempty"`
	// Hourly is the fixed charge per load balancer hour, if the product has
	// one (AWS: the NLB hour). Empty means no fixed charge.
	Hourly string `json:"hourly,omitempty"`
	// HourlyItem names the fixed charge in the breakdown; default "hour".
	HourlyItem string `json:"hourlyItem,omitempty"`
	// Units prices each counted unit, keyed as in CostInputs.Units. A unit
	// the provider reports but the list lacks is an error, never free: list
	// free units with hourly "0".
	Units map[string]UnitPrice `json:"units,omitempty"`
	// PerGB prices data by the GB (10^9 bytes), keyed by item
	// ("data-processed"): what metered usage (--usage-metrics, or the
	// forwarders' byte counters for local addresses) measures in GB.
	PerGB map[string]string `json:"perGB,omitempty"`
	// Basis says how the prices are known for these regions: "documented"
	// (the cloud's price page or price API lists them for the region),
	// "observed" (read off a bill for the region) or "carried" (copied from
	// CarriedFrom, a region believed to share the price, not confirmed for
	// these regions). Required in embedded files; CostStatus.Basis shows it.
	Basis string `json:"basis,omitempty"`
	// CarriedFrom is the region a "carried" price was copied from.
	CarriedFrom string `json:"carriedFrom,omitempty"`
	// Evidence names where a documented or observed price was read.
	Evidence string `json:"evidence,omitempty"`
}

// Bases of a RegionPrice.
const (
	BasisDocumented = "documented"
	BasisObserved   = "observed"
	BasisCarried    = "carried"
)

// UnitPrice is the price of one kind of unit.
type UnitPrice struct {
	// Item names the line in the breakdown; default is the unit's key.
	Item string `json:"item,omitempty"`
	// Hourly is the price per unit and hour; with FirstBlock, the price of
	// each unit beyond the block.
	Hourly string `json:"hourly"`
	// FirstBlock, when positive, bills the first FirstBlock units together
	// at FirstBlockHourly (GCP forwarding rules, Azure rules: "first 5").
	FirstBlock       int    `json:"firstBlock,omitempty"`
	FirstBlockHourly string `json:"firstBlockHourly,omitempty"`
	// Allocation says how a first block, which the cloud bills per project
	// or subscription and region, is attributed to one load balancer:
	// "standalone" (default) prices each load balancer as if it were the
	// only one, charging the block for its first units; "marginal" prices
	// every unit at Hourly, as if the block were already paid by others.
	Allocation string `json:"allocation,omitempty"`
	// Estimate is the quantity assumed when the provider does not report the
	// unit, e.g. one NLCU per hour for an NLB; the breakdown line gets the
	// suffix "-estimate".
	Estimate *int `json:"estimate,omitempty"`
}

// Allocations of a first block to a load balancer.
const (
	AllocationStandalone = "standalone"
	AllocationMarginal   = "marginal"
)

// ConfigMapKey is the data key of the price file in an override ConfigMap.
const ConfigMapKey = "prices.yaml"

// maxFileSize bounds a price file; real ones are a few KiB.
const maxFileSize = 1 << 20

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	kindPattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	regionPattern   = regexp.MustCompile(`^(\*|[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$`)
	tierPattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)
	unitPattern     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]{0,62}$`)
	itemPattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Parse reads and validates a price file. source is what CostStatus.Source
// will say for its prices, e.g. "embedded:aws-2026-11-21". Every problem is
// a *Error with Reason PriceDataInvalid.
func Parse(data []byte, source string) (*File, error) {
	if len(data) > maxFileSize {
		return nil, invalidf("%s: price data is %d bytes, more than the limit of %d", source, len(data), maxFileSize)
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, invalidf("%s: %v", source, err)
	}
	if err := f.validate(); err != nil {
		return nil, invalidf("%s: %v", source, err)
	}
	f.source = source
	return &f, nil
}

// ParseConfigMap reads the price file under ConfigMapKey of cm. Its prices
// carry the source "configmap:<namespace>/<name>".
func ParseConfigMap(cm *corev1.ConfigMap) (*File, error) {
	source := "configmap:" + cm.Namespace + "/" + cm.Name
	data, ok := cm.Data[ConfigMapKey]
	if !ok {
		return nil, invalidf("%s: no key %q in the ConfigMap's data", source, ConfigMapKey)
	}
	return Parse([]byte(data), source)
}

// Source is what CostStatus.Source says for prices from f.
func (f *File) Source() string { return f.source }

func (f *File) validate() error {
	if f.Name != "" && !namePattern.MatchString(f.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits, '.' and '-'", f.Name)
	}
	if _, err := time.Parse(time.DateOnly, f.AsOf); err != nil {
		return fmt.Errorf("asOf %q: want the date the prices were read, as YYYY-MM-DD", f.AsOf)
	}
	if !currencyPattern.MatchString(f.Currency) {
		return fmt.Errorf("currency %q: want an ISO 4217 code such as USD", f.Currency)
	}
	if len(f.Products) == 0 {
		return fmt.Errorf("no products")
	}
	seen := map[entryKey]bool{}
	for i, p := range f.Products {
		if !kindPattern.MatchString(p.Kind) {
			return fmt.Errorf("products[%d].kind %q: want a name such as aws-nlb", i, p.Kind)
		}
		if len(p.Prices) == 0 {
			return fmt.Errorf("product %s: no prices", p.Kind)
		}
		for j, rp := range p.Prices {
			at := fmt.Sprintf("product %s, prices[%d]", p.Kind, j)
			if len(rp.Regions) == 0 {
				return fmt.Errorf("%s: no regions", at)
			}
			for _, r := range rp.Regions {
				if !regionPattern.MatchString(r) {
					return fmt.Errorf("%s: region %q: want a cloud region name or \"*\"", at, r)
				}
				k := entryKey{kind: p.Kind, region: r, tier: rp.Tier}
				if seen[k] {
					return fmt.Errorf("%s: region %q tier %q is priced twice", at, r, rp.Tier)
				}
				seen[k] = true
			}
			if _, err := compileRegionPrice(rp); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
		}
	}
	return nil
}

// compiled is a RegionPrice with its amounts parsed.
type compiled struct {
	basis      string   // "documented", "observed", "carried:<region>", "live" or ""
	hourly     *big.Rat // nil: no fixed charge
	hourlyItem string
	units      map[string]compiledUnit
	perGB      map[string]*big.Rat
}

type compiledUnit struct {
	item       string
	hourly     *big.Rat
	firstBlock int
	blockPrice *big.Rat
	marginal   bool
	estimate   int
	estimated  bool
}

func compileRegionPrice(rp RegionPrice) (*compiled, error) {
	if rp.Tier != "" && !tierPattern.MatchString(rp.Tier) {
		return nil, fmt.Errorf("tier %q: want letters, digits, '_' and '-'", rp.Tier)
	}
	if rp.Hourly == "" && len(rp.Units) == 0 && len(rp.PerGB) == 0 {
		return nil, fmt.Errorf("neither an hourly charge nor unit prices")
	}
	c := &compiled{hourlyItem: rp.HourlyItem, units: map[string]compiledUnit{}, perGB: map[string]*big.Rat{}}
	for _, item := range sortedKeys(rp.PerGB) {
		if !itemPattern.MatchString(item) {
			return nil, fmt.Errorf("perGB.%s: want lower-case letters, digits and '-'", item)
		}
		r, err := ParseAmount(rp.PerGB[item])
		if err != nil {
			return nil, fmt.Errorf("perGB.%s: %w", item, err)
		}
		c.perGB[item] = r
	}
	switch rp.Basis {
	case "", BasisDocumented, BasisObserved:
		if rp.CarriedFrom != "" {
			return nil, fmt.Errorf("carriedFrom %q without basis %q", rp.CarriedFrom, BasisCarried)
		}
		c.basis = rp.Basis
	case BasisCarried:
		if rp.CarriedFrom == "" || rp.CarriedFrom == "*" || !regionPattern.MatchString(rp.CarriedFrom) {
			return nil, fmt.Errorf("basis %q needs carriedFrom, the region the prices were copied from", BasisCarried)
		}
		c.basis = BasisCarried + ":" + rp.CarriedFrom
	default:
		return nil, fmt.Errorf("basis %q: want %q, %q or %q", rp.Basis, BasisDocumented, BasisObserved, BasisCarried)
	}
	if c.hourlyItem == "" {
		c.hourlyItem = "hour"
	}
	if !itemPattern.MatchString(c.hourlyItem) {
		return nil, fmt.Errorf("hourlyItem %q: want lower-case letters, digits and '-'", c.hourlyItem)
	}
	if rp.Hourly != "" {
		h, err := ParseAmount(rp.Hourly)
		if err != nil {
			return nil, fmt.Errorf("hourly: %w", err)
		}
		c.hourly = h
	} else if rp.HourlyItem != "" {
		return nil, fmt.Errorf("hourlyItem %q without an hourly charge", rp.HourlyItem)
	}
	items := map[string]string{}
	if c.hourly != nil {
		items[c.hourlyItem] = "the hourly charge"
	}
	for _, name := range sortedKeys(rp.Units) {
		u, err := compileUnit(name, rp.Units[name])
		if err != nil {
			return nil, fmt.Errorf("units.%s: %w", name, err)
		}
		for _, it := range u.itemNames() {
			if other, dup := items[it]; dup {
				return nil, fmt.Errorf("units.%s: breakdown item %q is already used by %s", name, it, other)
			}
			items[it] = "units." + name
		}
		c.units[name] = u
	}
	return c, nil
}

func compileUnit(name string, up UnitPrice) (compiledUnit, error) {
	u := compiledUnit{item: up.Item, firstBlock: up.FirstBlock}
	if !unitPattern.MatchString(name) {
		return u, fmt.Errorf("unit name: want lowerCamel letters and digits")
	}
	if u.item == "" {
		u.item = strings.ToLower(name)
	}
	if !itemPattern.MatchString(u.item) {
		return u, fmt.Errorf("item %q: want lower-case letters, digits and '-'", u.item)
	}
	h, err := ParseAmount(up.Hourly)
	if err != nil {
		return u, fmt.Errorf("hourly (write \"0\" for a free unit): %w", err)
	}
	u.hourly = h
	switch {
	case up.FirstBlock < 0 || up.FirstBlock > 1_000_000:
		return u, fmt.Errorf("firstBlock %d: want 0 to 1000000", up.FirstBlock)
	case up.FirstBlock > 0:
		b, err := ParseAmount(up.FirstBlockHourly)
		if err != nil {
			return u, fmt.Errorf("firstBlockHourly: %w", err)
		}
		u.blockPrice = b
	case up.FirstBlockHourly != "":
		return u, fmt.Errorf("firstBlockHourly without firstBlock")
	}
	switch up.Allocation {
	case "", AllocationStandalone:
	case AllocationMarginal:
		u.marginal = true
	default:
		return u, fmt.Errorf("allocation %q: want %q or %q", up.Allocation, AllocationStandalone, AllocationMarginal)
	}
	if up.Allocation != "" && up.FirstBlock == 0 {
		return u, fmt.Errorf("allocation applies only with firstBlock")
	}
	if up.Estimate != nil {
		if *up.Estimate < 0 || *up.Estimate > 1_000_000 {
			return u, fmt.Errorf("estimate %d: want 0 to 1000000", *up.Estimate)
		}
		u.estimate, u.estimated = *up.Estimate, true
	}
	return u, nil
}

// itemNames lists every breakdown line the unit can produce.
func (u compiledUnit) itemNames() []string {
	base := []string{u.item}
	if u.firstBlock > 0 {
		base = []string{u.blockItem(), u.item + "-additional"}
	}
	if !u.estimated {
		return base
	}
	var out []string
	for _, b := range base {
		out = append(out, b, b+"-estimate")
	}
	return out
}

func (u compiledUnit) blockItem() string { return fmt.Sprintf("%s-first-%d", u.item, u.firstBlock) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
