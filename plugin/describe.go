package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// Description is kubectl lb describe's result; -o json and -o yaml print it.
type Description struct {
	// Class is the Service's class as the operator reads it: its record's
	// spec.class, else spec.loadBalancerClass.
	Class string `json:"class"`
	// ClassesServed are the classes of the LoadBalancer records in the
	// cluster, which is how the plugin learns what the operator serves.
	ClassesServed []string `json:"classesServed"`
	// NotServed says why the Service has no load balancer, when its class
	// is not one that is served.
	NotServed    string                 `json:"notServed,omitempty"`
	Service      *corev1.Service        `json:"service"`
	LoadBalancer *v1alpha1.LoadBalancer `json:"loadBalancer,omitempty"`
	// Events are the Service's and the LoadBalancer's, oldest first.
	Events []corev1.Event `json:"events"`
}

// maxEvents is how many recent Events describe shows.
const maxEvents = 15

func newDescribeCommand(g *global) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "describe SERVICE",
		Short: "Show one load balancer: class, readiness, ready endpoints, provider resources, conditions, Events, backend health, cost breakdown, announcing node",
		Long: `Show one load balancer in depth. The Serving line (the Service's
lb.portico.dev/Serving condition) says whether any endpoint is ready, and if not
why, e.g. a selector that matches no pod. A Service without a load balancer is
either waiting for the operator or of a class no Portico backend here serves;
the classes served are learned from the LoadBalancer records in the cluster.`,
		Example: `  kubectl lb describe web
  kubectl lb describe -n shop web -o yaml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("describe takes exactly one Service name, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.describe(cmd.Context(), args[0], output)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func (g *global) describe(ctx context.Context, name, output string) error {
	if g.allNamespaces {
		return usageError(fmt.Errorf("describe needs one namespace; use -n instead of -A"))
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	ns := c.Namespace
	d := &Description{Service: &corev1.Service{}, Events: []corev1.Event{}}
	key := client.ObjectKey{Namespace: ns, Name: name}
	if err := c.Reader.Get(ctx, key, d.Service); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("service %q not found in namespace %s", name, ns)
		}
		return apiError(err, "get", "services", ns)
	}
	d.Service.APIVersion, d.Service.Kind = "v1", "Service"
	if d.Service.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return fmt.Errorf("service %s/%s is of type %s, not LoadBalancer; Portico builds load balancers only for Services of type LoadBalancer", ns, name, d.Service.Spec.Type)
	}
	lb := &v1alpha1.LoadBalancer{}
	switch err := c.Reader.Get(ctx, key, lb); {
	case err == nil:
		lb.APIVersion, lb.Kind = v1alpha1.GroupVersion.String(), "LoadBalancer"
		d.LoadBalancer = lb
	case apierrors.IsNotFound(err):
	default:
		return apiError(err, "get", "loadbalancers.lb.portico.dev", ns)
	}
	if d.Events, err = recentEvents(ctx, c.Reader, ns, name); err != nil {
		return err
	}
	d.Class = classOf(d.Service, d.LoadBalancer)
	d.ClassesServed = []string{}
	if d.LoadBalancer == nil {
		if served := servedClasses(ctx, c, ns); served != nil {
			d.ClassesServed = served
		}
		d.NotServed = notServedReason(d.Service, d.Class, d.ClassesServed)
	}

	var down error
	if d.LoadBalancer == nil && d.NotServed == "" {
		var lbs []v1alpha1.LoadBalancer
		down = g.checkOperator(ctx, c, ns, lbs).Down
	}
	if done, err := printObject(g.opts.Out, output, d); done || err != nil {
		if err != nil {
			return err
		}
		return down
	}
	if err := writeDescription(g.opts.Out, d, g.opts.Now()); err != nil {
		return err
	}
	return down
}

// recentEvents returns the latest Events about the Service or its
// LoadBalancer, oldest first, as kubectl describe shows them.
func recentEvents(ctx context.Context, r client.Reader, namespace, name string) ([]corev1.Event, error) {
	var events corev1.EventList
	err := list(ctx, r, &events, "events", namespace, client.MatchingFields{"involvedObject.name": name})
	if err != nil {
		return nil, err
	}
	out := []corev1.Event{}
	for _, e := range events.Items {
		if k := e.InvolvedObject.Kind; k == "Service" || k == "LoadBalancer" {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(&out[i]).Before(eventTime(&out[j])) })
	if len(out) > maxEvents {
		out = out[len(out)-maxEvents:]
	}
	return out, nil
}

// eventTime is when an Event last happened, for both the core/v1 and the
// events.k8s.io/v1 way of recording it.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// writeDescription prints d in kubectl describe's layout.
func writeDescription(out io.Writer, d *Description, now time.Time) error {
	w := printers.GetNewTabWriter(out)
	p := func(indent int, format string, args ...any) {
		fmt.Fprintf(w, strings.Repeat("  ", indent)+format+"\n", args...)
	}
	svc, lb := d.Service, d.LoadBalancer
	p(0, "Name:\t%s", svc.Name)
	p(0, "Namespace:\t%s", svc.Namespace)
	if svc.Spec.LoadBalancerClass == nil && d.Class != "" {
		p(0, "Class:\t%s (the operator's default class; the Service names none)", d.Class)
	} else {
		p(0, "Class:\t%s", orNone(d.Class))
	}
	if c := meta.FindStatusCondition(svc.Status.Conditions, readyCondition); c != nil {
		p(0, "Ready:\t%s (%s) %s", c.Status, c.Reason, brief(c.Message))
	} else {
		p(0, "Ready:\t<unknown>")
	}
	if c := meta.FindStatusCondition(svc.Status.Conditions, servingCondition); c != nil {
		p(0, "Serving:\t%s (%s) %s", c.Status, c.Reason, brief(c.Message))
	}
	p(0, "Created:\t%s ago", age(svc.CreationTimestamp, now))

	switch {
	case lb != nil:
		writeLoadBalancer(p, lb, svc, now)
	case d.NotServed != "":
		p(0, "LoadBalancer:\t<none>: %s", d.NotServed)
	default:
		why := "the operator has not recorded a load balancer for this Service yet"
		if len(d.ClassesServed) == 0 {
			why += " (" + servedList(nil) + ")"
		}
		p(0, "LoadBalancer:\t<none>: %s", why)
	}

	p(0, "Events:")
	if len(d.Events) == 0 {
		p(1, "<none>")
	} else {
		p(1, "Type\tReason\tAge\tFrom\tMessage")
		p(1, "----\t------\t----\t----\t-------")
		for i := range d.Events {
			e := &d.Events[i]
			from := e.Source.Component
			if from == "" {
				from = e.ReportingController
			}
			ago := age(metav1.NewTime(eventTime(e)), now)
			if e.Count > 1 {
				ago = fmt.Sprintf("%s (x%d)", ago, e.Count)
			} else if e.Series != nil && e.Series.Count > 1 {
				ago = fmt.Sprintf("%s (x%d)", ago, e.Series.Count)
			}
			p(1, "%s\t%s\t%s\t%s\t%s", e.Type, e.Reason, ago, orNone(from), brief(e.Message))
		}
	}
	return w.Flush()
}

func writeLoadBalancer(p func(int, string, ...any), lb *v1alpha1.LoadBalancer, svc *corev1.Service, now time.Time) {
	s := &lb.Status
	p(0, "Addresses:\t%s", addresses(lb, true))
	if s.LastSyncTime != nil {
		p(0, "Last Sync:\t%s ago", age(*s.LastSyncTime, now))
	} else {
		p(0, "Last Sync:\t<never>")
	}
	health := fmt.Sprintf("%d healthy of %d", s.Backends.Healthy, s.Backends.Total)
	if s.Backends.Healthy < 0 {
		health = fmt.Sprintf("%d, health unknown", s.Backends.Total)
	}
	p(0, "Backends:\t%s", health)
	if e := s.Endpoints; e == nil {
		p(0, "Endpoints:\t<unknown>: the operator has not counted them yet")
	} else {
		on := ""
		if len(e.Nodes) > 0 {
			on = ", on " + strings.Join(e.Nodes, ", ")
		}
		p(0, "Endpoints:\t%d ready of %d%s", e.Ready, e.Total, on)
	}

	p(0, "Ports:")
	if len(s.Ports) == 0 {
		p(1, "<none>")
	}
	ps := slices.Clone(s.Ports)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Port < ps[j].Port })
	for _, port := range ps {
		state := "OK"
		if port.Error != "" {
			state = "Error: " + port.Error
		}
		p(1, "%d/%s\t%s", port.Port, port.Protocol, state)
	}

	if len(s.Announcements) > 0 || announcers(lb) != "" {
		p(0, "Announced By:")
		for _, a := range s.Announcements {
			since := ""
			if a.Since != nil {
				since = fmt.Sprintf(" (for %s)", age(*a.Since, now))
			}
			p(1, "%s\t%s%s", a.Address, a.Node, since)
		}
		if len(s.Announcements) == 0 {
			for _, a := range s.Addresses {
				if a.Node != "" {
					p(1, "%s\t%s", a.IP, a.Node)
				}
			}
		}
	}

	if b := s.BGP; b != nil {
		p(0, "Advertised By (BGP):")
		for _, a := range b.Addresses {
			nodes := cmp.Or(strings.Join(a.Nodes, ","), "<none>")
			peers := cmp.Or(strings.Join(a.Peers, ","), "<none>")
			p(1, "%s\t%s (to BGPPeer %s; IPPool %s, %s)", a.Address, nodes, peers, a.IPPool, a.Announce)
		}
	}

	p(0, "Provider Resources:")
	if len(s.Resources) == 0 {
		p(1, "<none>")
	} else {
		p(1, "Kind\tID")
		p(1, "----\t--")
		for _, r := range s.Resources {
			p(1, "%s\t%s", r.Kind, r.ID)
		}
	}

	p(0, "Cost:")
	if c := s.Cost; c == nil {
		p(1, "<none>: %s", unpricedReason(lb, svc))
	} else {
		p(1, "Hourly:\t%s %s", c.Hourly, c.Currency)
		if c.Fixed != "" {
			p(1, "Fixed:\t%s %s per hour", c.Fixed, c.Currency)
		}
		if u := c.Usage; u != nil {
			p(1, "Usage:\t%s %s per hour (the last day's), from %s, read %s ago", u.Hourly, c.Currency, u.Source, age(u.MeasuredAt, now))
			if u.Error != "" {
				p(1, "Metrics:\tlatest reading failed: %s", brief(u.Error))
			}
		}
		p(1, "Monthly:\t%s %s (730 h)", c.Monthly, c.Currency)
		p(1, "Region:\t%s", orNone(c.Region))
		p(1, "Prices:\t%s (list prices, see docs/cost.md)", c.Source)
		if c.Basis != "" {
			p(1, "Basis:\t%s", basisText(c.Basis))
		}
		if c.FetchedAt != nil {
			stale := ""
			if c.Stale {
				stale = ", STALE"
			}
			p(1, "Fetched:\t%s ago%s", age(*c.FetchedAt, now), stale)
		}
		if c.SourceError != "" {
			p(1, "Price API:\t%s", brief(c.SourceError))
		}
		if len(c.Breakdown) > 0 {
			p(1, "Item\tQuantity\tHourly")
			p(1, "----\t--------\t------")
			for _, it := range c.Breakdown {
				p(1, "%s\t%d\t%s", it.Item, it.Quantity, it.Hourly)
			}
		}
		if u := c.Usage; u != nil {
			for _, per := range []struct {
				name string
				p    *v1alpha1.UsagePeriod
			}{{"Last Day", u.LastDay}, {"Month to Date", u.MonthToDate}} {
				if per.p == nil {
					continue
				}
				var items []string
				for _, it := range per.p.Items {
					amount := it.Amount
					if amount == "" {
						amount = "included"
					}
					items = append(items, fmt.Sprintf("%s %s %s (%s)", it.Item, it.Quantity, it.Unit, amount))
				}
				p(1, "%s:\t%s %s, %s to %s: %s", per.name, per.p.Amount, c.Currency,
					per.p.Start.UTC().Format("2006-01-02 15:04"), per.p.End.UTC().Format("2006-01-02 15:04"), strings.Join(items, ", "))
			}
		}
	}

	p(0, "Conditions:")
	if len(s.Conditions) == 0 {
		p(1, "<none>")
	} else {
		p(1, "Type\tStatus\tReason\tAge\tMessage")
		p(1, "----\t------\t------\t---\t-------")
		for _, c := range s.Conditions {
			p(1, "%s\t%s\t%s\t%s\t%s", c.Type, c.Status, c.Reason, age(c.LastTransitionTime, now), brief(c.Message))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// basisText says how a price is known, in words: measured and documented
// prices apart from assumed ones.
func basisText(b string) string {
	switch {
	case b == "live":
		return "live (read from the cloud's price API)"
	case b == "documented":
		return "documented (the list price published for this region)"
	case b == "observed":
		return "observed (read off a bill for this region)"
	case strings.HasPrefix(b, "carried:"):
		return "ASSUMED: the list price of " + strings.TrimPrefix(b, "carried:") + ", not confirmed for this region"
	}
	return b
}
