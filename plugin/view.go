package plugin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/pricing"
)

// Conditions the operator writes on Services (controllers/conditions.go)
// and on LoadBalancer records; the plugin reads them, never decides them.
const (
	readyCondition   = "lb.portico.dev/Ready"
	servingCondition = "lb.portico.dev/Serving"
	// reasonClassNotServed and reasonProviderDisabled are the Ready reasons
	// of a Service whose class this operator does not serve.
	reasonClassNotServed   = "ClassNotServed"
	reasonProviderDisabled = "ProviderDisabled"
)

// classOf is the class of svc read the way the operator decides it, for
// every command: the class recorded in the Service's LoadBalancer record
// (model.Recorded: the operator's decision, default class included), else
// the class the Service asks for, else "". A record whose Service could not
// be read is taken at its word.
func classOf(svc *corev1.Service, rec *v1alpha1.LoadBalancer) string {
	if svc == nil {
		if rec != nil {
			return rec.Spec.Class
		}
		return ""
	}
	if c := model.Recorded(svc, rec); c != "" {
		return c
	}
	if svc.Spec.LoadBalancerClass != nil {
		return *svc.Spec.LoadBalancerClass
	}
	return ""
}

// servicesByKey lists the Services in namespace ("" for all) by
// namespace/name. It is best effort: without permission the commands still
// print what the records say.
func servicesByKey(ctx context.Context, c *Clients, namespace string) map[types.NamespacedName]*corev1.Service {
	var svcs corev1.ServiceList
	out := map[types.NamespacedName]*corev1.Service{}
	if err := list(ctx, c.Reader, &svcs, "services", namespace); err != nil {
		return out
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		out[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	return out
}

// servedClasses are the classes this cluster's operator is seen to serve:
// the spec.class of every LoadBalancer record it can list. The plugin cannot
// read the operator's --providers and --default-class (the operator may run
// anywhere, and a Deployment's args need not be the flags in effect), so it
// learns the classes from the operator's own decisions; a Service the
// operator refuses says so itself with the ClassNotServed reason. Nil when no
// record can be listed.
func servedClasses(ctx context.Context, c *Clients, namespace string) []string {
	lbs := &v1alpha1.LoadBalancerList{}
	if err := c.Reader.List(ctx, lbs); err != nil {
		// Not allowed at cluster scope: the namespace still tells something.
		if err := list(ctx, c.Reader, lbs, "loadbalancers.lb.portico.dev", namespace); err != nil {
			return nil
		}
	}
	var out []string
	for _, lb := range lbs.Items {
		if lb.Spec.Class != "" && !slices.Contains(out, lb.Spec.Class) {
			out = append(out, lb.Spec.Class)
		}
	}
	sort.Strings(out)
	return out
}

// notServedReason explains why a Service has no LoadBalancer record, or
// returns "" when the operator simply has not got to it yet.
func notServedReason(svc *corev1.Service, class string, served []string) string {
	if c := meta.FindStatusCondition(svc.Status.Conditions, readyCondition); c != nil &&
		(c.Reason == reasonClassNotServed || c.Reason == reasonProviderDisabled) {
		return fmt.Sprintf("the operator does not serve class %s (%s); %s", orNone(class), c.Reason, servedList(served))
	}
	if len(served) == 0 || slices.Contains(served, class) {
		return ""
	}
	if class == "" {
		return "the Service names no spec.loadBalancerClass and no Portico backend takes it as the default class (the operator's --default-class); " + servedList(served)
	}
	return fmt.Sprintf("no Portico backend in this cluster serves class %s; %s", class, servedList(served))
}

func servedList(served []string) string {
	if len(served) == 0 {
		return "no LoadBalancer records exist, so the classes served are not known"
	}
	return "classes served here: " + strings.Join(served, ", ") + " (from the LoadBalancer records)"
}

// maxPorts is how many ports a table shows before summarising the rest.
const maxPorts = 3

// ports lists the ports in numeric order: "80/TCP,443/TCP". Unless all is
// set, a long list is cut to its first ports and a count of the rest:
// "80/TCP,443/TCP,+98".
func ports(lb *v1alpha1.LoadBalancer, all bool) string {
	ps := slices.Clone(lb.Status.Ports)
	sort.SliceStable(ps, func(i, j int) bool {
		return ps[i].Port < ps[j].Port || ps[i].Port == ps[j].Port && ps[i].Protocol < ps[j].Protocol
	})
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.Error != "" {
			s += "(!)"
		}
		out = append(out, s)
	}
	if !all && len(out) > maxPorts {
		out = append(out[:maxPorts-1], fmt.Sprintf("+%d", len(out)-(maxPorts-1)))
	}
	return strings.Join(out, ",")
}

// endpoints is "ready/total" from the record, or <unknown> before the
// operator counted them.
func endpoints(lb *v1alpha1.LoadBalancer) string {
	e := lb.Status.Endpoints
	if e == nil {
		return "<unknown>"
	}
	return fmt.Sprintf("%d/%d", e.Ready, e.Total)
}

// endpointNodes lists the nodes that hold a ready endpoint.
func endpointNodes(lb *v1alpha1.LoadBalancer) string {
	if lb.Status.Endpoints == nil {
		return "<unknown>"
	}
	return strings.Join(lb.Status.Endpoints.Nodes, ",")
}

// pendingReason says why a load balancer has no cost: the Priced condition
// when the operator tried to price it, else why it is not ready (the
// record's Ready condition, else the Service's), since the operator prices
// only what a backend built. It returns reason and message.
func pendingReason(lb *v1alpha1.LoadBalancer, svc *corev1.Service) (string, string) {
	if c := meta.FindStatusCondition(lb.Status.Conditions, pricing.ConditionType); c != nil && c.Status != metav1.ConditionTrue {
		return c.Reason, c.Message
	}
	if c := meta.FindStatusCondition(lb.Status.Conditions, readyCondition); c != nil && c.Status != metav1.ConditionTrue {
		return c.Reason, "not priced until the load balancer is ready: " + c.Message
	}
	if svc != nil {
		if c := meta.FindStatusCondition(svc.Status.Conditions, readyCondition); c != nil && c.Status != metav1.ConditionTrue {
			return c.Reason, "not priced until the load balancer is ready: " + c.Message
		}
	}
	return "NotPricedYet", "the operator has not priced this load balancer yet (no status.cost, no " + pricing.ConditionType + " condition)"
}

// Message limits: a quoted value longer than maxValue is shortened, and a
// message longer than maxMessage is cut after its reason has been shown.
const (
	maxValue   = 64
	maxMessage = 400
)

// brief prepares a message written by someone else for one line of output:
// every quoted value longer than maxValue (even one cut off unterminated by
// an older operator) is shortened to its start and its length, so that the
// words around it, which say what is wrong, stay readable; what is still too
// long is cut at maxMessage.
func brief(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			break
		}
		b.WriteString(msg[:i+1])
		msg = msg[i+1:]
		end := closingQuote(msg)
		value, rest := msg, ""
		if end >= 0 {
			value, rest = msg[:end], msg[end:]
		}
		if len(value) > maxValue {
			b.WriteString(cut(value, maxValue))
			fmt.Fprintf(&b, `... (%d characters)`, len(value))
		} else {
			b.WriteString(value)
		}
		if end < 0 {
			break
		}
		b.WriteByte('"')
		msg = rest[1:]
	}
	out := b.String()
	if len(out) > maxMessage {
		out = cut(out, maxMessage) + "..."
	}
	return out
}

// closingQuote is the index of the first unescaped '"' in s, or -1.
func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// cut shortens s to at most n bytes without splitting a UTF-8 character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
