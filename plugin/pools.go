package plugin

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
)

func newPoolsCommand(g *global) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "pools",
		Short: "Show IPPool usage: addresses, total, assigned, free",
		Long: `Show the IPPools of the local backend and how many of their addresses are given
to Services. IPPools are cluster-scoped, so -n and -A do not apply.`,
		Example: `  kubectl lb pools
  kubectl lb pools -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.pools(cmd.Context(), output)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func (g *global) pools(ctx context.Context, output string) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	pools := &v1alpha1.IPPoolList{}
	if err := list(ctx, c.Reader, pools, "ippools.lb.portico.dev", ""); err != nil {
		return err
	}
	sort.Slice(pools.Items, func(i, j int) bool { return pools.Items[i].Name < pools.Items[j].Name })
	pools.APIVersion, pools.Kind = v1alpha1.GroupVersion.String(), "IPPoolList"
	for i := range pools.Items {
		pools.Items[i].APIVersion, pools.Items[i].Kind = v1alpha1.GroupVersion.String(), "IPPool"
	}
	// Usage in status is only as fresh as the operator keeps it.
	down := g.checkOperator(ctx, c, "", nil).Down
	if done, err := printObject(g.opts.Out, output, pools); done || err != nil {
		if err != nil {
			return err
		}
		return down
	}
	if len(pools.Items) == 0 {
		fmt.Fprintln(g.opts.ErrOut, "No IPPools found.")
		return down
	}
	wide := output == outputWide
	header := []string{"NAME", "ADDRESSES", "AUTO ASSIGN", "TOTAL", "ASSIGNED", "FREE", "USED", "AGE"}
	if wide {
		header = append(header, "SERVICE SELECTOR", "NAMESPACE SELECTOR", "CONDITIONS")
	}
	now := g.opts.Now()
	t := newTable(g.opts.Out, header...)
	for i := range pools.Items {
		p := &pools.Items[i]
		auto := "true"
		if p.Spec.AutoAssign != nil && !*p.Spec.AutoAssign {
			auto = "false"
		}
		row := []string{p.Name, strings.Join(p.Spec.Addresses, ","), auto,
			fmt.Sprint(p.Status.Total), fmt.Sprint(p.Status.Assigned), fmt.Sprint(p.Status.Free), usedPercent(p), age(p.CreationTimestamp, now)}
		if p.Status.ObservedGeneration == 0 && p.Status.Total == 0 {
			row[3], row[4], row[5], row[6] = "<unknown>", "<unknown>", "<unknown>", "<unknown>"
		}
		if wide {
			row = append(row, selector(p.Spec.ServiceSelector), selector(p.Spec.NamespaceSelector), conditions(p.Status.Conditions))
		}
		t.row(row...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	return down
}

// usedPercent is Assigned/Total rounded down to a whole percent.
func usedPercent(p *v1alpha1.IPPool) string {
	if p.Status.Total <= 0 {
		return "-"
	}
	pct := math.Floor(float64(p.Status.Assigned) / float64(p.Status.Total) * 100)
	return fmt.Sprintf("%d%%", int(max(0, min(pct, 100))))
}

func selector(s *metav1.LabelSelector) string {
	if s == nil {
		return "<all>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<invalid>"
	}
	return sel.String()
}

// conditions lists the pool's conditions as Type=Status.
func conditions(cs []metav1.Condition) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Type+"="+string(c.Status))
	}
	return strings.Join(out, ",")
}
