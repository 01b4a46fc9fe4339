package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/pricing"
)

// Output formats, as kubectl's -o.
const (
	outputTable = "table"
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// outputFlag registers -o on cmd.
func outputFlag(cmd *cobra.Command, target *string) {
	cmd.Flags().StringVarP(target, "output", "o", outputTable, "Output format: table, wide, json or yaml.")
}

func checkOutput(format string) error {
	switch format {
	case outputTable, "", outputWide, outputJSON, outputYAML:
		return nil
	}
	return usageError(fmt.Errorf("unknown output format %q: want table, wide, json or yaml", format))
}

// printObject writes v as JSON or YAML; it reports false for table formats.
func printObject(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case outputJSON:
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return true, err
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = w.Write(b)
		return true, err
	}
	return false, nil
}

// table writes tab-separated rows aligned the way kubectl aligns them.
type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer, header ...string) *table {
	return &table{w: w, rows: [][]string{header}}
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) flush() error {
	tw := printers.GetNewTabWriter(t.w)
	for _, r := range t.rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "<none>"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// age prints how long ago t was, as kubectl's AGE column does.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// money rounds a decimal amount to cents for display: "28.105" -> "28.11".
// Amounts that do not parse are shown as they are, marked.
func money(amount, currency string) string { return rounded(amount, currency, 2) }

// hourlyMoney shows an hourly rate to a hundredth of a cent: "0.0385".
func hourlyMoney(amount, currency string) string { return rounded(amount, currency, 4) }

func rounded(amount, currency string, places int) string {
	r, err := pricing.ParseAmount(amount)
	if err != nil {
		return "<invalid " + amount + ">"
	}
	return strings.TrimSpace(pricing.RoundAmount(r, places) + " " + currency)
}
