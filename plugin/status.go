package plugin

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
)

func newStatusCommand(g *global) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List load balancers: class, address, ports, readiness, backends, ready endpoints, monthly cost, age",
		Long: `List load balancers: class, address, ports, readiness, backends (healthy/total),
ready endpoints (ready/total), monthly cost and age.

CLASS is the class recorded in the LoadBalancer record, as the operator decided
it (default class included). PORTS shows at most three ports ("80/TCP,443/TCP,+98");
-o wide shows them all, with the nodes that announce a local address (ANNOUNCED
BY: the ARP/NDP node, then "BGP:" and the nodes advertising it over BGP) and
those that hold ready endpoints. A missing
cost shows its reason: <RegionNotPriced>, <ProviderRetrying>, ...`,
		Example: `  kubectl lb status
  kubectl lb status -A -o wide
  kubectl lb status -n shop -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.status(cmd.Context(), output)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func (g *global) status(ctx context.Context, output string) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	ns := g.scope(c)
	lbs, err := listLoadBalancers(ctx, c, ns)
	if err != nil {
		return err
	}
	op := g.checkOperator(ctx, c, ns, lbs.Items)

	if done, err := printObject(g.opts.Out, output, lbs); done || err != nil {
		if err != nil {
			return err
		}
		return op.Down
	}
	if len(lbs.Items) == 0 {
		g.noneFound(ns)
	} else if err := g.statusTable(lbs.Items, servicesByKey(ctx, c, ns), output == outputWide); err != nil {
		return err
	}
	g.warnUnprocessed(op)
	return op.Down
}

// listLoadBalancers lists in namespace ("" for all), sorted by namespace and
// name, with apiVersion and kind set so that -o json reads back as a list.
func listLoadBalancers(ctx context.Context, c *Clients, namespace string) (*v1alpha1.LoadBalancerList, error) {
	lbs := &v1alpha1.LoadBalancerList{}
	if err := list(ctx, c.Reader, lbs, "loadbalancers.lb.portico.dev", namespace); err != nil {
		return nil, err
	}
	sort.Slice(lbs.Items, func(i, j int) bool {
		a, b := lbs.Items[i], lbs.Items[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	lbs.APIVersion, lbs.Kind = v1alpha1.GroupVersion.String(), "LoadBalancerList"
	for i := range lbs.Items {
		lbs.Items[i].APIVersion, lbs.Items[i].Kind = v1alpha1.GroupVersion.String(), "LoadBalancer"
	}
	return lbs, nil
}

func (g *global) noneFound(namespace string) {
	if namespace == "" {
		fmt.Fprintln(g.opts.ErrOut, "No load balancers found.")
		return
	}
	fmt.Fprintf(g.opts.ErrOut, "No load balancers found in %s namespace.\n", namespace)
}

func (g *global) statusTable(lbs []v1alpha1.LoadBalancer, svcs map[types.NamespacedName]*corev1.Service, wide bool) error {
	header := []string{"NAME", "CLASS", "ADDRESS", "PORTS", "READY", "BACKENDS", "ENDPOINTS", "MONTHLY COST", "AGE"}
	if wide {
		header = append(header, "HOURLY COST", "REGION", "ANNOUNCED BY", "ENDPOINT NODES", "LAST SYNC")
	}
	if g.allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	now := g.opts.Now()
	t := newTable(g.opts.Out, header...)
	for i := range lbs {
		lb := &lbs[i]
		svc := svcs[types.NamespacedName{Namespace: lb.Namespace, Name: lb.Name}]
		row := []string{lb.Name, classOf(svc, lb), addresses(lb, wide), ports(lb, wide), ready(lb), backends(lb), endpoints(lb), monthlyCost(lb, svc), age(lb.CreationTimestamp, now)}
		if wide {
			hourly, region := "<unknown>", ""
			if lb.Status.Cost != nil {
				hourly = lb.Status.Cost.Hourly + " " + lb.Status.Cost.Currency
				region = lb.Status.Cost.Region
			}
			lastSync := "<never>"
			if lb.Status.LastSyncTime != nil {
				lastSync = age(*lb.Status.LastSyncTime, now)
			}
			row = append(row, hourly, region, announcers(lb), endpointNodes(lb), lastSync)
		}
		if g.allNamespaces {
			row = append([]string{lb.Namespace}, row...)
		}
		t.row(row...)
	}
	return t.flush()
}

// addresses is the first address, or with wide all of them; an address
// still being provisioned shows as <pending>, as in kubectl get svc.
func addresses(lb *v1alpha1.LoadBalancer, all bool) string {
	var out []string
	for _, a := range lb.Status.Addresses {
		v := a.IP
		if v == "" {
			v = a.Hostname
		}
		if v != "" {
			out = append(out, v)
		}
	}
	switch {
	case len(out) == 0 && lb.Status.Address != "":
		return lb.Status.Address
	case len(out) == 0:
		return "<pending>"
	case !all:
		return out[0]
	}
	return strings.Join(out, ",")
}

func ready(lb *v1alpha1.LoadBalancer) string {
	if lb.Status.Ready != "" {
		return lb.Status.Ready
	}
	if c := meta.FindStatusCondition(lb.Status.Conditions, readyCondition); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

func backends(lb *v1alpha1.LoadBalancer) string {
	if lb.Status.BackendsSummary != "" {
		return lb.Status.BackendsSummary
	}
	return fmt.Sprintf("%d/%d", lb.Status.Backends.Healthy, lb.Status.Backends.Total)
}

// monthlyCost is the monthly cost rounded to cents, or why there is none.
func monthlyCost(lb *v1alpha1.LoadBalancer, svc *corev1.Service) string {
	if c := lb.Status.Cost; c != nil {
		return money(c.Monthly, c.Currency)
	}
	reason, _ := pendingReason(lb, svc)
	return "<" + reason + ">"
}

// announcers lists the nodes that answer ARP/NDP for the addresses, then
// those that advertise them over BGP ("BGP:<none>" when none does), without
// spaces so that the wide table splits on whitespace.
func announcers(lb *v1alpha1.LoadBalancer) string {
	var out []string
	for _, a := range lb.Status.Announcements {
		out = append(out, a.Node)
	}
	if len(out) == 0 {
		for _, a := range lb.Status.Addresses {
			if a.Node != "" {
				out = append(out, a.Node)
			}
		}
	}
	l2 := strings.Join(out, ",")
	b := lb.Status.BGP
	if b == nil {
		return l2
	}
	bgp := "BGP:" + cmp.Or(strings.Join(b.AdvertisingNodes, ","), "<none>")
	if l2 == "" {
		return bgp
	}
	return l2 + ";" + bgp
}
