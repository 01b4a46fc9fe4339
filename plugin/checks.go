package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// Exit codes of kubectl-lb.
const (
	ExitError        = 1
	ExitUsage        = 2
	ExitNoCRDs       = 3
	ExitOperatorDown = 4
	ExitForbidden    = 5
)

// Error is a failure with its own exit code and a message that says what to
// do about it.
type Error struct {
	Code int
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.Msg == "":
		return e.Err.Error()
	case e.Err == nil:
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode maps an error from the commands to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := errorsAs[*Error](err); ok {
		return e.Code
	}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return ExitForbidden
	}
	return ExitError
}

// checkAPI fails with ExitNoCRDs when lb.portico.dev/v1alpha1 is not served.
func checkAPI(d discovery.ServerResourcesInterface) error {
	gv := v1alpha1.GroupVersion.String()
	list, err := d.ServerResourcesForGroupVersion(gv)
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "discover", gv, "")
	}
	served := map[string]bool{}
	if list != nil {
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
	}
	var missing []string
	for _, r := range []string{"loadbalancers", "ippools"} {
		if !served[r] {
			missing = append(missing, r+"."+v1alpha1.GroupVersion.Group)
		}
	}
	if len(missing) > 0 {
		return &Error{Code: ExitNoCRDs, Msg: fmt.Sprintf(
			"the API server does not serve %s (%s): Portico's CRDs are not installed in this cluster; install them with \"kubectl apply -f config/crd/bases\" or Portico's release manifest",
			gv, strings.Join(missing, ", "))}
	}
	return nil
}

// apiError turns a 401/403 into a message naming what was denied.
func apiError(err error, verb, resource, namespace string) error {
	where := "at cluster scope"
	if namespace != "" {
		where = "in namespace " + namespace
	}
	switch {
	case apierrors.IsForbidden(err):
		return &Error{Code: ExitForbidden, Msg: fmt.Sprintf(
			"permission denied: you may not %s %s %s (HTTP 403); ask your cluster admin for get and list on loadbalancers and ippools in lb.portico.dev, and on Services and Events",
			verb, resource, where), Err: err}
	case apierrors.IsUnauthorized(err):
		return &Error{Code: ExitForbidden, Msg: "the API server did not accept your credentials (HTTP 401); check --kubeconfig, --context or --token", Err: err}
	}
	return fmt.Errorf("%s %s %s: %w", verb, resource, where, err)
}

// list is client.List with 403s explained.
func list(ctx context.Context, r client.Reader, l client.ObjectList, resource, namespace string, opts ...client.ListOption) error {
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := r.List(ctx, l, opts...); err != nil {
		return apiError(err, "list", resource, namespace)
	}
	return nil
}

// operatorGrace is how long a new Service may wait for the operator before
// its absence counts as the operator not running.
const operatorGrace = time.Minute

// operatorState is what the plugin found out about portico-operator.
type operatorState struct {
	// Down is set when the operator is known not to be running.
	Down error
	// Unprocessed are Services of Portico classes, older than the grace
	// period, that the operator has not touched.
	Unprocessed []types.NamespacedName
}

// checkOperator tells whether portico-operator is running. The leader Lease
// decides when it exists: renewed within its duration means running,
// otherwise not. Without a Lease (leader election off, or no permission to
// read it), the operator is judged by its work: Services of a Portico class
// older than a minute that have neither a LoadBalancer object nor the
// lb.portico.dev/Ready condition are unprocessed, and when no Service in
// scope has been processed at all the operator is taken to be down.
func (g *global) checkOperator(ctx context.Context, c *Clients, namespace string, lbs []v1alpha1.LoadBalancer) operatorState {
	now := g.opts.Now()
	lease := &coordinationv1.Lease{}
	err := c.Reader.Get(ctx, client.ObjectKey{Namespace: g.operatorNS, Name: g.operatorLease}, lease)
	if err == nil {
		if down := leaseExpired(lease, now); down != "" {
			return operatorState{Down: &Error{Code: ExitOperatorDown, Msg: fmt.Sprintf(
				"portico-operator is not running: its leader Lease %s/%s %s; check the operator's pods in namespace %s",
				g.operatorNS, g.operatorLease, down, g.operatorNS)}}
		}
		return operatorState{}
	}

	var svcs corev1.ServiceList
	if err := c.Reader.List(ctx, &svcs, client.InNamespace(namespace)); err != nil {
		return operatorState{} // cannot tell; the listing itself reported what it could
	}
	has := map[types.NamespacedName]bool{}
	for _, lb := range lbs {
		has[types.NamespacedName{Namespace: lb.Namespace, Name: lb.Name}] = true
	}
	var st operatorState
	processed := 0
	for i := range svcs.Items {
		s := &svcs.Items[i]
		// Without a record the class is the Service's own request (the
		// default class is the operator's setting, unknown here).
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer || !strings.HasPrefix(classOf(s, nil), providers.ClassPrefix) {
			continue
		}
		key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
		if has[key] || meta.FindStatusCondition(s.Status.Conditions, readyCondition) != nil {
			processed++
			continue
		}
		if now.Sub(s.CreationTimestamp.Time) >= operatorGrace {
			st.Unprocessed = append(st.Unprocessed, key)
		}
	}
	sort.Slice(st.Unprocessed, func(i, j int) bool { return st.Unprocessed[i].String() < st.Unprocessed[j].String() })
	if len(st.Unprocessed) > 0 && processed == 0 {
		st.Down = &Error{Code: ExitOperatorDown, Msg: fmt.Sprintf(
			"portico-operator does not appear to be running: %d Service(s) of Portico classes (%s) have had no LoadBalancer object or %s condition for over %s, and no Lease %s/%s exists; check that the operator is deployed and enables these classes (--providers)",
			len(st.Unprocessed), names(st.Unprocessed, 3), readyCondition, operatorGrace, g.operatorNS, g.operatorLease)}
	}
	return st
}

// leaseExpired describes why a Lease shows no live holder, or returns "".
func leaseExpired(l *coordinationv1.Lease, now time.Time) string {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "has no holder"
	}
	if l.Spec.RenewTime == nil {
		return "was never renewed"
	}
	d := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if age := now.Sub(l.Spec.RenewTime.Time); age > d {
		return fmt.Sprintf("was last renewed %s ago by %s (lease duration %s)", duration.HumanDuration(age), *l.Spec.HolderIdentity, d)
	}
	return ""
}

// warnUnprocessed prints the operator's backlog as a warning.
func (g *global) warnUnprocessed(st operatorState) {
	if len(st.Unprocessed) == 0 || st.Down != nil {
		return
	}
	fmt.Fprintf(g.opts.ErrOut, "Warning: %d Service(s) of Portico classes have no LoadBalancer object yet: %s\n",
		len(st.Unprocessed), names(st.Unprocessed, 5))
}

func names(keys []types.NamespacedName, max int) string {
	var s []string
	for i, k := range keys {
		if i == max {
			s = append(s, fmt.Sprintf("and %d more", len(keys)-max))
			break
		}
		s = append(s, k.String())
	}
	return strings.Join(s, ", ")
}
