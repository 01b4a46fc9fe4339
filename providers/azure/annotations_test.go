package azure

import (
	"errors"
	"reflect"
	"testing"

	"github.com/portico-lb/portico/providers"
)

func TestParseAnnotations(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name    string
		ann     map[string]string
		want    Settings
		wantErr bool
	}{
		{name: "none", ann: nil, want: Settings{}},
		{name: "other prefixes are ignored", ann: map[string]string{"aws.lb.portico.dev/x": "1", "lb.portico.dev/scheme": "internal"}, want: Settings{}},
		{name: "subnet", ann: map[string]string{AnnotationSubnet: "ilb-subnet"}, want: Settings{Subnet: "ilb-subnet"}},
		{name: "public ip name", ann: map[string]string{AnnotationPublicIPName: "my-ip_1"}, want: Settings{PublicIPName: "my-ip_1"}},
		{name: "prefix by name", ann: map[string]string{AnnotationPublicIPPrefix: "prefix1"}, want: Settings{PublicIPPrefix: "prefix1"}},
		{name: "prefix by id", ann: map[string]string{AnnotationPublicIPPrefix: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p1"},
			want: Settings{PublicIPPrefix: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p1"}},
		{name: "idle timeout", ann: map[string]string{AnnotationIdleTimeout: " 30 "}, want: Settings{IdleTimeoutMinutes: 30}},
		{name: "tcp reset false", ann: map[string]string{AnnotationTCPReset: "false"}, want: Settings{TCPReset: &no}},
		{name: "tcp reset true", ann: map[string]string{AnnotationTCPReset: "true"}, want: Settings{TCPReset: &yes}},
		{name: "probe", ann: map[string]string{AnnotationProbeProtocol: "HTTPS", AnnotationProbePort: "8443", AnnotationProbeRequestPath: "/ready", AnnotationProbeInterval: "15", AnnotationProbeThreshold: "3"},
			want: Settings{ProbeProtocol: "Https", ProbePort: 8443, ProbeRequestPath: "/ready", ProbeInterval: 15, ProbeThreshold: 3}},
		{name: "tcp probe", ann: map[string]string{AnnotationProbeProtocol: "tcp"}, want: Settings{ProbeProtocol: "Tcp"}},

		{name: "unknown key", ann: map[string]string{AnnotationPrefix + "internal": "true"}, wantErr: true},
		{name: "bad subnet", ann: map[string]string{AnnotationSubnet: "-bad"}, wantErr: true},
		{name: "empty public ip name", ann: map[string]string{AnnotationPublicIPName: ""}, wantErr: true},
		{name: "public ip name too long", ann: map[string]string{AnnotationPublicIPName: string(make([]byte, 81))}, wantErr: true},
		{name: "prefix id of another type", ann: map[string]string{AnnotationPublicIPPrefix: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/p1"}, wantErr: true},
		{name: "idle timeout low", ann: map[string]string{AnnotationIdleTimeout: "3"}, wantErr: true},
		{name: "idle timeout high", ann: map[string]string{AnnotationIdleTimeout: "101"}, wantErr: true},
		{name: "idle timeout not a number", ann: map[string]string{AnnotationIdleTimeout: "4m"}, wantErr: true},
		{name: "tcp reset garbage", ann: map[string]string{AnnotationTCPReset: "maybe"}, wantErr: true},
		{name: "probe protocol", ann: map[string]string{AnnotationProbeProtocol: "udp"}, wantErr: true},
		{name: "probe port zero", ann: map[string]string{AnnotationProbePort: "0"}, wantErr: true},
		{name: "probe port high", ann: map[string]string{AnnotationProbePort: "65536"}, wantErr: true},
		{name: "probe path relative", ann: map[string]string{AnnotationProbeRequestPath: "healthz"}, wantErr: true},
		{name: "probe path with query", ann: map[string]string{AnnotationProbeRequestPath: "/h?x=1"}, wantErr: true},
		{name: "probe path on tcp", ann: map[string]string{AnnotationProbeProtocol: "Tcp", AnnotationProbeRequestPath: "/h"}, wantErr: true},
		{name: "probe interval low", ann: map[string]string{AnnotationProbeInterval: "4"}, wantErr: true},
		{name: "probe threshold zero", ann: map[string]string{AnnotationProbeThreshold: "0"}, wantErr: true},
		{name: "int overflow", ann: map[string]string{AnnotationProbePort: "99999999999"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnotations(tc.ann)
			if tc.wantErr {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != "InvalidAnnotation" {
					t.Fatalf("got (%+v, %v), want ConfigError InvalidAnnotation", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseAnnotations: any input yields either settings within Azure's
// limits or a ConfigError, never a panic.
func FuzzParseAnnotations(f *testing.F) {
	for _, seed := range [][2]string{
		{"idle-timeout", "30"}, {"tcp-reset", "true"}, {"probe-protocol", "Http"}, {"probe-port", "10256"},
		{"probe-request-path", "/healthz"}, {"probe-interval", "5"}, {"probe-num-of-probe", "2"},
		{"subnet", "s1"}, {"public-ip-name", "ip"}, {"public-ip-prefix", "/subscriptions/a/resourceGroups/b/providers/Microsoft.Network/publicIPPrefixes/c"},
		{"nope", "x"}, {"idle-timeout", "-1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, k, v string) {
		s, err := ParseAnnotations(map[string]string{AnnotationPrefix + k: v})
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason == "" {
				t.Fatalf("error is not a ConfigError with a reason: %v", err)
			}
			return
		}
		if s.IdleTimeoutMinutes != 0 && (s.IdleTimeoutMinutes < 4 || s.IdleTimeoutMinutes > 100) {
			t.Fatalf("idle timeout %d out of range", s.IdleTimeoutMinutes)
		}
		if s.ProbePort < 0 || s.ProbePort > 65535 {
			t.Fatalf("probe port %d out of range", s.ProbePort)
		}
		if s.ProbeRequestPath != "" && s.ProbeRequestPath[0] != '/' {
			t.Fatalf("probe path %q is not absolute", s.ProbeRequestPath)
		}
		if s.PublicIPName != "" && !resourceNameRE.MatchString(s.PublicIPName) {
			t.Fatalf("public IP name %q accepted but invalid", s.PublicIPName)
		}
	})
}
