package pricing

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// HoursPerMonth is the month Portico prices with: 730 hours, the average
// month (8760 hours / 12) the clouds' own calculators use.
const HoursPerMonth = 730

// MaxDecimalPlaces bounds the precision of a price. With prices of at most
// this many places and whole quantities, every sum and product the catalog
// forms is exact and prints without rounding.
const MaxDecimalPlaces = 10

// amountPattern accepts plain non-negative decimals: "0", "0.0225", "12".
// No sign, exponent, thousands separator or leading dot, so "1e3" or ".5"
// cannot slip through as something the author did not mean.
var amountPattern = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,10})?$`)

// ParseAmount parses a non-negative decimal money amount exactly.
func ParseAmount(s string) (*big.Rat, error) {
	if !amountPattern.MatchString(s) {
		return nil, fmt.Errorf("%q is not a decimal amount (digits with at most %d decimal places, e.g. \"0.0225\")", s, MaxDecimalPlaces)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("%q is not a decimal amount", s)
	}
	return r, nil
}

// FormatAmount prints r exactly when it has at most MaxDecimalPlaces
// decimal places, otherwise rounded half-up to that many, without trailing
// zeros: 0.0285 -> "0.0285", 20.8050 -> "20.805", 3 -> "3".
func FormatAmount(r *big.Rat) string {
	s := RoundAmount(r, MaxDecimalPlaces)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	return s
}

// RoundAmount prints r rounded half away from zero to exactly places
// decimal places: RoundAmount(20.805, 2) = "20.81".
func RoundAmount(r *big.Rat, places int) string {
	if places < 0 {
		places = 0
	}
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	// n = |r| * 10^places, rounded half up.
	n := new(big.Rat).Abs(r)
	n.Mul(n, new(big.Rat).SetInt(scale))
	q, m := new(big.Int).QuoRem(n.Num(), n.Denom(), new(big.Int))
	if new(big.Int).Mul(m, big.NewInt(2)).Cmp(n.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	digits := q.String()
	if places > 0 {
		if len(digits) <= places {
			digits = strings.Repeat("0", places-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-places] + "." + digits[len(digits)-places:]
	}
	if r.Sign() < 0 && strings.Trim(digits, "0.") != "" {
		digits = "-" + digits
	}
	return digits
}

// Monthly returns hourly times HoursPerMonth.
func Monthly(hourly *big.Rat) *big.Rat {
	return new(big.Rat).Mul(hourly, big.NewRat(HoursPerMonth, 1))
}

// numberPattern is a JSON number (RFC 8259 section 6).
var numberPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// ParseNumber parses a JSON number as a price API wrote it ("0.025",
// "5E-3") exactly. Numbers with more than MaxDecimalPlaces decimal places,
// or an exponent beyond ±30, are refused rather than rounded.
func ParseNumber(s string) (*big.Rat, error) {
	if !numberPattern.MatchString(s) || len(s) > 64 {
		return nil, fmt.Errorf("%q is not a JSON number", s)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		var exp int
		if _, err := fmt.Sscan(strings.TrimPrefix(s[i+1:], "+"), &exp); err != nil || exp > 30 || exp < -30 {
			return nil, fmt.Errorf("%q: exponent out of range", s)
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("%q is not a number", s)
	}
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(MaxDecimalPlaces), nil)))
	if !scaled.IsInt() {
		return nil, fmt.Errorf("%q has more than %d decimal places", s, MaxDecimalPlaces)
	}
	return r, nil
}
