package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/portico-lb/portico/providers"
)

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		lbIP    string
		want    string // fmt of result
		wantErr string // substring of the message; "" for none
	}{
		{name: "defaults", want: "{external [] }"},
		{name: "internal", ann: map[string]string{AnnotationScheme: "internal"}, want: "{internal [] }"},
		{name: "internet-facing alias", ann: map[string]string{AnnotationScheme: "internet-facing"}, want: "{external [] }"},
		{name: "bad scheme", ann: map[string]string{AnnotationScheme: "private"}, wantErr: `lb.portico.dev/scheme: invalid value "private"`},
		{name: "one ip", ann: map[string]string{AnnotationIP: "192.0.2.10"}, want: "{external [192.0.2.10] }"},
		{name: "dual stack", ann: map[string]string{AnnotationIP: "192.0.2.10, 2001:db8::10"}, want: "{external [192.0.2.10 2001:db8::10] }"},
		{name: "mapped v4 unmapped", ann: map[string]string{AnnotationIP: "::ffff:192.0.2.1"}, want: "{external [192.0.2.1] }"},
		{name: "two v4", ann: map[string]string{AnnotationIP: "192.0.2.1,192.0.2.2"}, wantErr: "two IPv4"},
		{name: "three", ann: map[string]string{AnnotationIP: "192.0.2.1,2001:db8::1,192.0.2.3"}, wantErr: "at most two"},
		{name: "garbage ip", ann: map[string]string{AnnotationIP: "192.0.2.300"}, wantErr: "not an IP address"},
		{name: "loopback", ann: map[string]string{AnnotationIP: "127.0.0.1"}, wantErr: "cannot be a load-balancer address"},
		{name: "zone", ann: map[string]string{AnnotationIP: "fe80::1%eth0"}, wantErr: "has a zone"},
		{name: "spec.loadBalancerIP honoured", lbIP: "192.0.2.7", want: "{external [192.0.2.7] }"},
		{name: "annotation wins over spec", ann: map[string]string{AnnotationIP: "192.0.2.8"}, lbIP: "192.0.2.7", want: "{external [192.0.2.8] }"},
		{name: "bad spec.loadBalancerIP", lbIP: "nope", wantErr: "spec.loadBalancerIP"},
		{name: "sharing key", ann: map[string]string{AnnotationAllowSharedIP: "team-a"}, want: "{external [] team-a}"},
		{name: "bad sharing key", ann: map[string]string{AnnotationAllowSharedIP: "a b"}, wantErr: "allow-shared-ip"},
		{name: "empty sharing key", ann: map[string]string{AnnotationAllowSharedIP: ""}, wantErr: "allow-shared-ip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAnnotations(tc.ann, tc.lbIP)
			if tc.wantErr != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != ReasonInvalidAnnotation {
					t.Fatalf("got %v, want a ConfigError with reason %s", err, ReasonInvalidAnnotation)
				}
				if !contains(ce.Message, tc.wantErr) {
					t.Fatalf("message %q does not mention %q", ce.Message, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Fatalf("got %s, want %s", s, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func FuzzParseAnnotations(f *testing.F) {
	f.Add("internal", "192.0.2.1,2001:db8::1", "key", "")
	f.Add("x", "::ffff:1.2.3.4", "", "10.0.0.1")
	f.Add("", ",", "a..b", "fe80::1%lo")
	f.Fuzz(func(t *testing.T, scheme, ip, key, lbIP string) {
		got, err := parseAnnotations(map[string]string{AnnotationScheme: scheme, AnnotationIP: ip, AnnotationAllowSharedIP: key}, lbIP)
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Message == "" {
				t.Fatalf("error is not a ConfigError with a message: %v", err)
			}
			return
		}
		if len(got.IPs) > 2 {
			t.Fatalf("accepted %d addresses", len(got.IPs))
		}
		if len(got.IPs) == 2 && got.IPs[0].Is4() == got.IPs[1].Is4() {
			t.Fatalf("accepted two addresses of one family: %v", got.IPs)
		}
		if got.Scheme != providers.SchemeExternal && got.Scheme != providers.SchemeInternal {
			t.Fatalf("scheme %q", got.Scheme)
		}
	})
}
