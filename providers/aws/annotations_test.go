package aws

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/providers"
)

func TestParseAnnotations(t *testing.T) {
	cert := "arn:aws:acm:eu-west-1:123456789012:certificate/0b5e2e6c-1111-2222-3333-444455556666"
	tests := []struct {
		name    string
		in      map[string]string
		want    Annotations
		wantErr string // ConfigError reason; empty means success
	}{
		{name: "none", in: nil, want: Annotations{}},
		{name: "other prefixes are ignored", in: map[string]string{"lb.portico.dev/scheme": "internal", "gcp.lb.portico.dev/x": "y"}, want: Annotations{}},
		{
			name: "every key",
			in: map[string]string{
				AnnotationSubnets:              "subnet-0123456789abcdef0, subnet-0123456789abcdef1",
				AnnotationEIPAllocations:       "eipalloc-0123456789abcdef0,eipalloc-0123456789abcdef1",
				AnnotationSSLCert:              cert,
				AnnotationSSLPorts:             "443, https",
				AnnotationSSLNegotiationPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06",
				AnnotationProxyProtocolV2:      "true",
				AnnotationCrossZone:            "false",
				AnnotationHealthCheckProtocol:  "http",
				AnnotationHealthCheckPort:      "10256",
				AnnotationHealthCheckPath:      "/livez",
				AnnotationHealthCheckInterval:  "30",
				AnnotationHealthCheckTimeout:   "6",
				AnnotationHealthyThreshold:     "3",
				AnnotationUnhealthyThreshold:   "4",
			},
			want: Annotations{
				Subnets:        []string{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1"},
				EIPAllocations: []string{"eipalloc-0123456789abcdef0", "eipalloc-0123456789abcdef1"},
				SSLCert:        cert, SSLPorts: []string{"443", "https"}, SSLPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06",
				ProxyProtocol: true,
				HealthCheck:   HealthCheckOverrides{Protocol: "HTTP", Port: "10256", Path: "/livez", Interval: 30, Timeout: 6, Healthy: 3, Unhealthy: 4},
			},
		},
		{name: "ssl ports star means all", in: map[string]string{AnnotationSSLCert: cert, AnnotationSSLPorts: "*"}, want: Annotations{SSLCert: cert}},
		{name: "iam certificate", in: map[string]string{AnnotationSSLCert: "arn:aws:iam::123456789012:server-certificate/prod/web"}, want: Annotations{SSLCert: "arn:aws:iam::123456789012:server-certificate/prod/web"}},
		{name: "traffic-port", in: map[string]string{AnnotationHealthCheckPort: "traffic-port"}, want: Annotations{HealthCheck: HealthCheckOverrides{Port: "traffic-port"}}},
		{name: "unknown key", in: map[string]string{AnnotationPrefix + "subnet": "subnet-0123456789abcdef0"}, wantErr: "UnknownAnnotation"},
		{name: "subnet not an ID", in: map[string]string{AnnotationSubnets: "public-a"}, wantErr: "InvalidAnnotation"},
		{name: "empty subnet in list", in: map[string]string{AnnotationSubnets: "subnet-0123456789abcdef0,"}, wantErr: "InvalidAnnotation"},
		{name: "duplicate subnet", in: map[string]string{AnnotationSubnets: "subnet-0123456789abcdef0,subnet-0123456789abcdef0"}, wantErr: "InvalidAnnotation"},
		{name: "eip count differs from subnets", in: map[string]string{AnnotationSubnets: "subnet-0123456789abcdef0", AnnotationEIPAllocations: "eipalloc-0123456789abcdef0,eipalloc-0123456789abcdef1"}, wantErr: "InvalidAnnotation"},
		{name: "certificate not an ARN", in: map[string]string{AnnotationSSLCert: "my-cert"}, wantErr: "InvalidAnnotation"},
		{name: "ssl ports without cert", in: map[string]string{AnnotationSSLPorts: "443"}, wantErr: "InvalidAnnotation"},
		{name: "ssl port zero", in: map[string]string{AnnotationSSLCert: cert, AnnotationSSLPorts: "0"}, wantErr: "InvalidAnnotation"},
		{name: "ssl port too large", in: map[string]string{AnnotationSSLCert: cert, AnnotationSSLPorts: "70000"}, wantErr: "InvalidAnnotation"},
		{name: "bad bool", in: map[string]string{AnnotationProxyProtocolV2: "yes please"}, wantErr: "InvalidAnnotation"},
		{name: "interval too short", in: map[string]string{AnnotationHealthCheckInterval: "1"}, wantErr: "InvalidAnnotation"},
		{name: "threshold too high", in: map[string]string{AnnotationHealthyThreshold: "11"}, wantErr: "InvalidAnnotation"},
		{name: "health protocol", in: map[string]string{AnnotationHealthCheckProtocol: "UDP"}, wantErr: "InvalidAnnotation"},
		{name: "health port", in: map[string]string{AnnotationHealthCheckPort: "65536"}, wantErr: "InvalidAnnotation"},
		{name: "relative path", in: map[string]string{AnnotationHealthCheckPath: "healthz"}, wantErr: "InvalidAnnotation"},
		{name: "path with TCP", in: map[string]string{AnnotationHealthCheckPath: "/healthz", AnnotationHealthCheckProtocol: "TCP"}, wantErr: "InvalidAnnotation"},
		{name: "policy with spaces", in: map[string]string{AnnotationSSLCert: cert, AnnotationSSLNegotiationPolicy: "my policy"}, wantErr: "InvalidAnnotation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnotations(tc.in)
			if tc.wantErr != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != tc.wantErr {
					t.Fatalf("got %+v, %v; want ConfigError %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add(AnnotationSubnets, "subnet-0123456789abcdef0,subnet-0123456789abcdef1", AnnotationEIPAllocations, "eipalloc-0123456789abcdef0")
	f.Add(AnnotationSSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/abc", AnnotationSSLPorts, "443,https,*")
	f.Add(AnnotationHealthCheckInterval, "30", AnnotationHealthCheckPath, "/healthz")
	f.Add(AnnotationCrossZone, "true", AnnotationPrefix+"nope", "x")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		a, err := ParseAnnotations(map[string]string{k1: v1, k2: v2})
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason == "" || !utf8.ValidString(ce.Reason) {
				t.Fatalf("error is not a ConfigError with a reason: %v", err)
			}
			return
		}
		for _, s := range a.Subnets {
			if !subnetIDRE.MatchString(s) {
				t.Fatalf("accepted subnet %q", s)
			}
		}
		for _, s := range a.EIPAllocations {
			if !allocIDRE.MatchString(s) {
				t.Fatalf("accepted allocation %q", s)
			}
		}
		if h := a.HealthCheck; h.Interval != 0 && (h.Interval < 5 || h.Interval > 300) || h.Healthy != 0 && (h.Healthy < 2 || h.Healthy > 10) {
			t.Fatalf("accepted out-of-range health check %+v", h)
		}
		if a.SSLCert != "" && !strings.HasPrefix(a.SSLCert, "arn:aws") {
			t.Fatalf("accepted certificate %q", a.SSLCert)
		}
		// Whatever parses also plans without panicking.
		d := &providers.LoadBalancer{
			Key:   providers.Key{ClusterID: "c", Namespace: "ns", Name: "svc"},
			Ports: []providers.Port{{Name: "https", Protocol: providers.TCP, Port: 443, NodePort: 30443}},
			Nodes: []providers.Node{{Name: "n", ProviderID: "aws:///us-east-1a/i-0123456789abcdef0"}},
		}
		if _, err := buildPlan(d, a); err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("buildPlan returned a non-config error: %v", err)
			}
		}
	})
}

func TestManageBackendRulesFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool // DisableBackendRules
	}{
		{nil, false},
		{[]string{"--aws-manage-backend-security-group-rules"}, false},
		{[]string{"--aws-manage-backend-security-group-rules=false"}, true},
		{[]string{"--aws-manage-backend-security-group-rules=true"}, false},
	} {
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if c.DisableBackendRules != tc.want {
			t.Errorf("%v: DisableBackendRules %v, want %v", tc.args, c.DisableBackendRules, tc.want)
		}
	}
	var zero Config
	if zero.DisableBackendRules {
		t.Error("a Config built without flags does not manage the node rules")
	}
}
