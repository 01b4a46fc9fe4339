package main

import "testing"

func TestSumMetric(t *testing.T) {
	text := `# HELP apiserver_request_total Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 120
apiserver_request_total{code="200",component="apiserver",group="",resource="services",scope="resource",subresource="status",verb="PUT",version="v1"} 30
apiserver_request_total{code="200",component="apiserver",group="",resource="services",scope="resource",subresource="",verb="GET",version="v1"} 999
apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 5000
apiserver_request_total{code="200",component="apiserver",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1",note="a,b"} 2.5e+01
apiserver_request_total_other{verb="POST",resource="services"} 7
`
	if got := sumMetric(text, "apiserver_request_total", nil2writes); got != 175 {
		t.Fatalf("writes = %v, want 175 (120 POST + 30 PUT status + 25 events; not GETs, not leases, not another metric)", got)
	}
	if got := sumMetric("portico_provider_calls_total 3\nportico_provider_calls_total{class=\"x\"} 4\n", "portico_provider_calls_total",
		func(map[string]string) bool { return true }); got != 7 {
		t.Fatalf("calls = %v, want 7", got)
	}
}

func nil2writes(l map[string]string) bool {
	w := map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true}
	r := map[string]bool{"services": true, "loadbalancers": true, "events": true}
	return w[l["verb"]] && r[l["resource"]]
}
