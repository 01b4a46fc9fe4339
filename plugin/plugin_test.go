package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/plugin"
)

// TestTables checks every table the plugin prints against testdata/*.golden.
func TestTables(t *testing.T) {
	w := world{objs: cluster()}
	tests := []struct {
		golden string
		args   []string
	}{
		{"status", []string{"status", "-n", "shop"}},
		{"status-all-wide", []string{"status", "-A", "-o", "wide"}},
		{"cost-by-namespace", []string{"cost", "-A"}},
		{"cost-by-class-wide", []string{"cost", "-A", "--by", "class", "-o", "wide"}},
		{"cost-by-region", []string{"cost", "-A", "--by", "region"}},
		{"cost-period-day", []string{"cost", "-A", "--period=day"}},
		{"cost-period-month-by-class-wide", []string{"cost", "-A", "--period", "month", "--by", "class", "-o", "wide"}},
		{"describe-web", []string{"describe", "-n", "shop", "web"}},
		{"describe-dns", []string{"describe", "-n", "edge", "dns"}},
		{"pools", []string{"pools"}},
		{"pools-wide", []string{"pools", "-o", "wide"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			r := w.run(t, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			golden(t, tt.golden, r.stdout)
		})
	}
}

func TestStatusJSONReadsBack(t *testing.T) {
	r := world{objs: cluster()}.run(t, "status", "-A", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got v1alpha1.LoadBalancerList
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output is not a LoadBalancerList: %v\n%s", err, r.stdout)
	}
	if got.Kind != "LoadBalancerList" || got.APIVersion != "lb.portico.dev/v1alpha1" {
		t.Errorf("kind %q apiVersion %q", got.Kind, got.APIVersion)
	}
	var names []string
	for _, lb := range got.Items {
		names = append(names, lb.Namespace+"/"+lb.Name)
	}
	if strings.Join(names, " ") != "edge/dns shop/db shop/web" {
		t.Errorf("items %v, want edge/dns shop/db shop/web in order", names)
	}
	web := got.Items[2]
	if web.Status.Cost == nil || web.Status.Cost.Monthly != "28.105" || len(web.Status.Cost.Breakdown) != 2 || web.Status.Cost.Usage.LastDay.Items[0].Quantity != "24" {
		t.Errorf("shop/web cost did not survive the round trip: %+v", web.Status.Cost)
	}
}

func TestCostJSONReadsBack(t *testing.T) {
	r := world{objs: cluster()}.run(t, "cost", "-A", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got plugin.CostReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output is not a CostReport: %v\n%s", err, r.stdout)
	}
	if got.By != "namespace" || !got.At.Time.Equal(now) {
		t.Errorf("by %q at %v", got.By, got.At)
	}
	// shop/web: 0.0385/h for 72 h accrues 2.772; shop/db is unpriced.
	want := []plugin.CostGroup{
		{Key: "edge", Currency: "USD", LoadBalancers: 1, Hourly: "0", Monthly: "0", Accrued: "0"},
		{Key: "shop", Currency: "USD", LoadBalancers: 2, Unpriced: 1, Hourly: "0.0385", Monthly: "28.105", Accrued: "2.772"},
	}
	if len(got.Groups) != len(want) {
		t.Fatalf("groups %+v, want %+v", got.Groups, want)
	}
	for i := range want {
		if got.Groups[i] != want[i] {
			t.Errorf("group %d = %+v, want %+v", i, got.Groups[i], want[i])
		}
	}
	if len(got.Totals) != 1 || got.Totals[0].LoadBalancers != 3 || got.Totals[0].Unpriced != 1 || got.Totals[0].Monthly != "28.105" {
		t.Errorf("totals %+v", got.Totals)
	}
	if len(got.LoadBalancers) != 3 || got.LoadBalancers[1].Name != "db" || !strings.HasPrefix(got.LoadBalancers[1].Unpriced, "RegionNotPriced") {
		t.Errorf("lines %+v", got.LoadBalancers)
	}
}

// TestCostPeriodJSON: shop/web has 24 NLCU-hours measured over the last
// day and 71 this month; edge/dns has a cost without a fixed part (an
// operator from before usage) and no usage.
func TestCostPeriodJSON(t *testing.T) {
	for _, tc := range []struct {
		period                   string
		fixed, use, total, start string
		usageStart               string
	}{
		// 24 h × 0.0325 = 0.78, plus 24 NLCU-hours × 0.006 = 0.144.
		{"day", "0.78", "0.144", "0.924", "2026-11-20T12:00:00Z", "2026-11-20T11:00:00Z"},
		// web exists 72 h this month: 72 × 0.0325 = 2.34, plus 71 NLCU-hours × 0.006.
		{"month", "2.34", "0.426", "2.766", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z"},
	} {
		t.Run(tc.period, func(t *testing.T) {
			r := world{objs: cluster()}.run(t, "cost", "-A", "--period", tc.period, "-o", "json")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var got plugin.CostReport
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("output is not a CostReport: %v\n%s", err, r.stdout)
			}
			if got.Period != tc.period || got.Start.UTC().Format(time.RFC3339) != tc.start || !got.End.Time.Equal(now) {
				t.Errorf("period %q from %v to %v", got.Period, got.Start, got.End)
			}
			var web, dns *plugin.CostLine
			for i := range got.LoadBalancers {
				switch got.LoadBalancers[i].Name {
				case "web":
					web = &got.LoadBalancers[i]
				case "dns":
					dns = &got.LoadBalancers[i]
				}
			}
			if web == nil || web.Period == nil || dns == nil || dns.Period == nil {
				t.Fatalf("lines %+v", got.LoadBalancers)
			}
			if p := web.Period; p.Fixed != tc.fixed || p.Usage != tc.use || p.Total != tc.total || !p.Measured || p.UsageSource != "cloudwatch:AWS/NetworkELB" || p.UsageStart.UTC().Format(time.RFC3339) != tc.usageStart {
				t.Errorf("web %+v", p)
			}
			if p := dns.Period; p.Fixed != "0" || p.Usage != "0" || p.Measured {
				t.Errorf("dns %+v", p)
			}
			shop := got.Groups[1]
			if shop.Key != "shop" || shop.Total != tc.total || shop.Measured != 1 || shop.Unpriced != 1 {
				t.Errorf("shop group %+v", shop)
			}
		})
	}
}

// A last-day reading older than six hours does not stand for the last 24
// hours: the estimate does, with a warning.
func TestCostPeriodOldUsageIsEstimated(t *testing.T) {
	objs := cluster()
	web := objs[0].(*v1alpha1.LoadBalancer)
	web.Status.Cost.Usage.LastDay.End = metav1.NewTime(now.Add(-7 * time.Hour))
	r := world{objs: objs}.run(t, "cost", "-A", "--period", "day", "-o", "json")
	var got plugin.CostReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	// 24 h at the usage rate of 0.006 = 0.144 as an estimate.
	if p := got.LoadBalancers[2].Period; p == nil || p.Measured || p.Usage != "0.144" || p.UsageNote == "" {
		t.Errorf("web %+v", p)
	}
	r = world{objs: objs}.run(t, "cost", "-A", "--period", "day")
	if !strings.Contains(r.stderr, "shop/web usage: usage last read at") {
		t.Errorf("stderr lacks the warning:\n%s", r.stderr)
	}
}

func TestDescribeYAMLReadsBack(t *testing.T) {
	r := world{objs: cluster()}.run(t, "describe", "-n", "edge", "dns", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got plugin.Description
	if err := yaml.UnmarshalStrict([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output is not a Description: %v\n%s", err, r.stdout)
	}
	if got.Service == nil || got.Service.Name != "dns" || got.LoadBalancer == nil || got.LoadBalancer.Status.Announcements[0].Node != "node-b" {
		t.Errorf("service %+v load balancer %+v", got.Service, got.LoadBalancer)
	}
	var reasons []string
	for _, e := range got.Events {
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "Ensuring,Ensured,Announced" {
		t.Errorf("events %v, want the Service's and LoadBalancer's oldest first, not the Pod's", reasons)
	}
}

func TestPoolsJSONReadsBack(t *testing.T) {
	r := world{objs: cluster()}.run(t, "pools", "-o", "json")
	var got v1alpha1.IPPoolList
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(got.Items) != 2 || got.Items[0].Name != "office" || got.Items[0].Status.Free != 11 {
		t.Errorf("pools %+v", got.Items)
	}
}

func TestEmptyNamespace(t *testing.T) {
	r := world{objs: cluster()}.run(t, "status", "-n", "empty")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No load balancers found in empty namespace.") {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestFailures(t *testing.T) {
	forbidden := interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*v1alpha1.LoadBalancerList); ok {
			return apierrors.NewForbidden(schema.GroupResource{Group: "lb.portico.dev", Resource: "loadbalancers"}, "", nil)
		}
		return c.List(ctx, list, opts...)
	}}
	withoutLease := func(objs []client.Object) []client.Object {
		var out []client.Object
		for _, o := range objs {
			if o.GetName() != "portico-operator.lb.portico.dev" {
				out = append(out, o)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		w      world
		args   []string
		code   int
		stderr []string
		stdout string
	}{{
		name: "CRDs not installed", w: world{noCRDs: true}, args: []string{"status"},
		code: plugin.ExitNoCRDs, stderr: []string{"lb.portico.dev/v1alpha1", "CRDs are not installed"},
	}, {
		name: "CRDs not installed, pools", w: world{noCRDs: true}, args: []string{"pools"},
		code: plugin.ExitNoCRDs, stderr: []string{"loadbalancers.lb.portico.dev, ippools.lb.portico.dev"},
	}, {
		name: "permission denied", w: world{objs: cluster(), funcs: forbidden}, args: []string{"status", "-n", "shop"},
		code: plugin.ExitForbidden, stderr: []string{"permission denied", "list loadbalancers.lb.portico.dev in namespace shop", "403"},
	}, {
		name: "permission denied cluster-wide", w: world{objs: cluster(), funcs: forbidden}, args: []string{"cost", "-A"},
		code: plugin.ExitForbidden, stderr: []string{"at cluster scope"},
	}, {
		name: "operator Lease expired", w: world{objs: append(withoutLease(cluster()), lease("portico-operator-old", 5*time.Minute))}, args: []string{"status", "-A"},
		code: plugin.ExitOperatorDown, stderr: []string{"portico-operator is not running", "last renewed 5m ago by portico-operator-old"},
		stdout: "shop", // the table is still printed
	}, {
		name: "operator Lease released", w: world{objs: append(withoutLease(cluster()), lease("", 0))}, args: []string{"pools"},
		code: plugin.ExitOperatorDown, stderr: []string{"has no holder"},
	}, {
		name: "no Lease, Services of Portico classes never processed",
		w: world{objs: []client.Object{
			service("shop", "web", "lb.portico.dev/aws", 10*time.Minute, false),
			service("shop", "api", "lb.portico.dev/aws", 3*time.Minute, false),
		}},
		args: []string{"status", "-n", "shop"},
		code: plugin.ExitOperatorDown, stderr: []string{"does not appear to be running", "2 Service(s)", "shop/api, shop/web"},
	}, {
		name: "no Lease, one Service still waiting while others were processed",
		w: world{objs: append(withoutLease(cluster()),
			service("shop", "new", "lb.portico.dev/aws", 2*time.Minute, false))},
		args: []string{"status", "-n", "shop"},
		code: 0, stderr: []string{"Warning: 1 Service(s) of Portico classes have no LoadBalancer object yet: shop/new"},
	}, {
		name: "no Lease, a Service created seconds ago is not yet a sign of trouble",
		w:    world{objs: []client.Object{service("shop", "web", "lb.portico.dev/aws", 5*time.Second, false)}},
		args: []string{"status", "-n", "shop"}, code: 0, stderr: []string{"No load balancers found"},
	}, {
		name: "no Lease, Services of other classes do not count",
		w:    world{objs: []client.Object{service("shop", "web", "example.com/other", time.Hour, false)}},
		args: []string{"status", "-n", "shop"}, code: 0,
	}, {
		name: "describe: Service not found", w: world{objs: cluster()}, args: []string{"describe", "-n", "shop", "nope"},
		code: plugin.ExitError, stderr: []string{`service "nope" not found in namespace shop`},
	}, {
		name: "describe: not a LoadBalancer Service",
		w: world{objs: []client.Object{&corev1.Service{ObjectMeta: service("shop", "internal", "x", time.Hour, false).ObjectMeta,
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}}},
		args: []string{"describe", "-n", "shop", "internal"}, code: plugin.ExitError, stderr: []string{"of type ClusterIP, not LoadBalancer"},
	}, {
		name: "describe: operator never saw the Service",
		w:    world{objs: []client.Object{service("shop", "web", "lb.portico.dev/aws", time.Hour, false)}},
		args: []string{"describe", "-n", "shop", "web"}, code: plugin.ExitOperatorDown,
		stderr: []string{"does not appear to be running"}, stdout: "the operator has not recorded a load balancer",
	}, {
		name: "describe needs a name", w: world{}, args: []string{"describe"}, code: plugin.ExitUsage, stderr: []string{"exactly one Service name"},
	}, {
		name: "describe with -A", w: world{}, args: []string{"describe", "-A", "web"}, code: plugin.ExitUsage, stderr: []string{"use -n instead of -A"},
	}, {
		name: "unknown output format", w: world{}, args: []string{"status", "-o", "csv"}, code: plugin.ExitUsage, stderr: []string{`unknown output format "csv"`},
	}, {
		name: "unknown grouping", w: world{}, args: []string{"cost", "--by", "team"}, code: plugin.ExitUsage, stderr: []string{`--by "team"`},
	}, {
		name: "unknown period", w: world{}, args: []string{"cost", "--period", "week"}, code: plugin.ExitUsage, stderr: []string{`--period "week": want day or month`},
	}, {
		name: "unknown flag", w: world{}, args: []string{"status", "--colour"}, code: plugin.ExitUsage, stderr: []string{"unknown flag: --colour"},
	}, {
		name: "unknown command", w: world{}, args: []string{"frobnicate"}, code: plugin.ExitError, stderr: []string{`unknown command "frobnicate"`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.w.run(t, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, r.stdout)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := world{}.run(t, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "kubectl-lb ") {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
	r = world{}.run(t, "--help")
	for _, s := range []string{"kubectl lb [command]", "status", "cost", "describe", "pools", "--kubeconfig", "--context", "--namespace", "--all-namespaces", "Exit codes"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	r = world{}.run(t, "cost", "--help")
	for _, s := range []string{"kubectl lb cost", "--by", "--period", "month to date", "-o, --output"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("cost --help lacks %q:\n%s", s, r.stdout)
		}
	}
}

// Prices that are assumed (carried from another region) or out of date
// (stale live prices) are never shown as if measured: the report carries
// the basis and staleness, and stderr warns about each.
func TestCostWarnsAboutAssumedAndStalePrices(t *testing.T) {
	objs := cluster()
	edge := loadBalancer("edge", "nlb", "lb.portico.dev/aws", time.Hour,
		withHostname("k8s-edge-nlb.elb.sa-east-1.amazonaws.com"), withPorts(443), withBackends(1, 1),
		withCost("0.0252", "18.396", "sa-east-1", "embedded:aws-2026-11-21", v1alpha1.CostItem{Item: "nlb-hour", Quantity: 1, Hourly: "0.0252"}),
		withBasis("carried:us-west-1"))
	objs = append(objs, edge)
	r := world{objs: objs}.run(t, "cost", "-A")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"Warning: edge/nlb is priced with the list price of us-west-1, assumed for sa-east-1 and not confirmed",
		"Warning: shop/web is priced from stale live prices (aws-price-list: GetProducts AWSELB: AccessDeniedException",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	r = world{objs: objs}.run(t, "cost", "-A", "-o", "json")
	var got plugin.CostReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	bases := map[string]string{}
	for _, l := range got.LoadBalancers {
		bases[l.Namespace+"/"+l.Name] = fmt.Sprintf("%s stale=%v", l.Basis, l.Stale)
	}
	if bases["edge/nlb"] != "carried:us-west-1 stale=false" || bases["shop/web"] != "live stale=true" {
		t.Errorf("report lines: %v", bases)
	}
}
