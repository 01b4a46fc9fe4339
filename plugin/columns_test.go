package plugin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// TestPrinterColumns renders the additionalPrinterColumns of the generated
// CRDs (what kubectl get loadbalancers / ippools -o wide shows) for the
// fixture objects, as they reach the API server: through their JSON, where
// an omitted field is a blank <none> cell. The real kubectl checks the same
// columns against a real API server in TestRealKubectl.
func TestPrinterColumns(t *testing.T) {
	var lbs, pools []client.Object
	for _, o := range append(cluster(), troubles()...) {
		switch o.(type) {
		case *v1alpha1.LoadBalancer:
			lbs = append(lbs, o)
		case *v1alpha1.IPPool:
			pools = append(pools, o)
		}
	}
	for _, tt := range []struct {
		crd  string
		objs []client.Object
	}{
		{"loadbalancers", lbs},
		{"ippools", pools},
	} {
		t.Run(tt.crd, func(t *testing.T) {
			golden(t, "columns-"+tt.crd, printColumns(t, tt.crd, tt.objs))
		})
	}
}

// TestUnusedPoolShowsZero: kubectl get ippools shows ASSIGNED 0 for a pool
// nobody uses, not a blank.
func TestUnusedPoolShowsZero(t *testing.T) {
	out := printColumns(t, "ippools", []client.Object{pool("spare", 16, 0, "198.51.100.0/28")})
	if got := column(t, out, "spare", "ASSIGNED"); got != "0" {
		t.Errorf("ASSIGNED of an unused pool = %q, want 0:\n%s", got, out)
	}
	b, err := json.Marshal(v1alpha1.IPPoolStatus{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"total":0`, `"assigned":0`, `"free":0`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("IPPool status JSON %s lacks %s", b, f)
		}
	}
}

// printColumns is a kubectl-style table of objs under the printer columns
// of config/crd/bases/lb.portico.dev_<plural>.yaml, priority columns
// included.
func printColumns(t *testing.T, plural string, objs []client.Object) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "config", "crd", "bases", "lb.portico.dev_"+plural+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	cols := crd.Spec.Versions[0].AdditionalPrinterColumns
	var out bytes.Buffer
	tw := printers.GetNewTabWriter(&out)
	header := []string{"NAME"}
	for _, c := range cols {
		header = append(header, strings.ToUpper(c.Name))
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var u map[string]any
		if err := json.Unmarshal(raw, &u); err != nil {
			t.Fatal(err)
		}
		cells := []string{o.GetName()}
		for _, c := range cols {
			cells = append(cells, cell(t, c, u))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// cell evaluates one column as the API server's table convertor does: a
// missing value is <none>, a date is an age.
func cell(t *testing.T, c apiextensionsv1.CustomResourceColumnDefinition, obj map[string]any) string {
	t.Helper()
	jp := jsonpath.New(c.Name).AllowMissingKeys(true)
	if err := jp.Parse("{" + c.JSONPath + "}"); err != nil {
		t.Fatalf("column %s: %v", c.Name, err)
	}
	results, err := jp.FindResults(obj)
	if err != nil || len(results) == 0 || len(results[0]) == 0 {
		return "<none>"
	}
	v := results[0][0].Interface()
	if v == nil {
		return "<none>"
	}
	if c.Type == "date" {
		ts, err := time.Parse(time.RFC3339, fmt.Sprint(v))
		if err != nil {
			return "<invalid>"
		}
		return duration.HumanDuration(now.Sub(metav1.NewTime(ts).Time))
	}
	return fmt.Sprint(v)
}
