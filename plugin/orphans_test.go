package plugin_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/model"
)

func orphanReport(t *testing.T, rep model.OrphanReport) client.Object {
	t.Helper()
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: model.OrphanReportName},
		Data: map[string]string{model.OrphanReportKey: string(body)}}
}

func TestOrphans(t *testing.T) {
	rep := model.OrphanReport{
		ClusterID: "k8s-0123456789abcdef", ScannedAt: now.Add(-3 * time.Minute),
		Orphans: []model.Orphan{
			{Class: "lb.portico.dev/gcp", Kind: "instanceGroup", ID: "zones/us-central1-a/instanceGroups/portico-k8s-0123", FirstSeen: now.Add(-time.Hour)},
			{Class: "lb.portico.dev/aws", Kind: "targetGroup", ID: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/k8s-shop-web/0a1b", Service: "shop/web", FirstSeen: now.Add(-13 * time.Minute)},
			{Class: "lb.portico.dev/aws", Kind: "loadBalancer", ID: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/k8s-shop-web/9f8e", Service: "shop/web", FirstSeen: now.Add(-13 * time.Minute)},
		},
		Errors: map[string]string{"lb.portico.dev/azure": "listing load balancers: AuthorizationFailed"},
	}
	r := world{objs: append(cluster(), orphanReport(t, rep))}.run(t, "orphans")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	golden(t, "orphans", r.stdout)
	for _, want := range []string{"Cluster k8s-0123456789abcdef, scanned 3m ago", "deletion off", "Warning: lb.portico.dev/azure could not be scanned: listing load balancers: AuthorizationFailed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}

	r = world{objs: append(cluster(), orphanReport(t, rep))}.run(t, "orphans", "-o", "json")
	var back model.OrphanReport
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || len(back.Orphans) != 3 || back.Orphans[0].Class != "lb.portico.dev/aws" {
		t.Errorf("json %v: %+v", err, back)
	}
}

func TestOrphansBeforeFirstScan(t *testing.T) {
	r := world{objs: cluster()}.run(t, "orphans")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No orphan scan has reported yet") {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}
