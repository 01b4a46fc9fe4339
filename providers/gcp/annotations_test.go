package gcp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
)

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		name       string
		in         map[string]string
		want       gcp.Annotations
		wantReason string
	}{
		{name: "nothing set", in: nil, want: gcp.Annotations{}},
		{name: "other prefixes are ignored", in: map[string]string{"aws.lb.portico.dev/subnets": "x", "lb.portico.dev/scheme": "internal"}},
		{name: "static address", in: map[string]string{gcp.AnnotationAddressName: "web-ip"}, want: gcp.Annotations{AddressName: "web-ip"}},
		{name: "address name is trimmed", in: map[string]string{gcp.AnnotationAddressName: " web-ip "}, want: gcp.Annotations{AddressName: "web-ip"}},
		{name: "address name must be a GCE name", in: map[string]string{gcp.AnnotationAddressName: "Web_IP"}, wantReason: "InvalidAnnotation"},
		{name: "address name may not end in a dash", in: map[string]string{gcp.AnnotationAddressName: "web-"}, wantReason: "InvalidAnnotation"},
		{name: "address name at most 63 characters", in: map[string]string{gcp.AnnotationAddressName: "a" + strings.Repeat("b", 63)}, wantReason: "InvalidAnnotation"},
		{name: "ephemeral, any case", in: map[string]string{gcp.AnnotationAddressType: "Ephemeral"}, want: gcp.Annotations{AddressType: gcp.AddressEphemeral}},
		{name: "reserved", in: map[string]string{gcp.AnnotationAddressType: "reserved"}, want: gcp.Annotations{AddressType: gcp.AddressReserved}},
		{name: "unknown address type", in: map[string]string{gcp.AnnotationAddressType: "static"}, wantReason: "InvalidAnnotation"},
		{name: "named address cannot be ephemeral", in: map[string]string{gcp.AnnotationAddressName: "ip", gcp.AnnotationAddressType: "ephemeral"}, wantReason: "InvalidAnnotation"},
		{name: "named address may say reserved", in: map[string]string{gcp.AnnotationAddressName: "ip", gcp.AnnotationAddressType: "reserved"}, want: gcp.Annotations{AddressName: "ip", AddressType: gcp.AddressReserved}},
		{name: "subnet by name", in: map[string]string{gcp.AnnotationSubnet: "nodes"}, want: gcp.Annotations{Subnet: "nodes"}},
		{name: "subnet by path", in: map[string]string{gcp.AnnotationSubnet: "projects/my-proj/regions/us-east1/subnetworks/nodes"}, want: gcp.Annotations{Subnet: "projects/my-proj/regions/us-east1/subnetworks/nodes"}},
		{name: "subnet by full URL is rejected", in: map[string]string{gcp.AnnotationSubnet: "https://www.googleapis.com/compute/v1/projects/p/regions/r/subnetworks/n"}, wantReason: "InvalidAnnotation"},
		{name: "subnet path with wrong collection", in: map[string]string{gcp.AnnotationSubnet: "projects/my-proj/regions/us-east1/networks/nodes"}, wantReason: "InvalidAnnotation"},
		{name: "standard tier, any case", in: map[string]string{gcp.AnnotationNetworkTier: "Standard"}, want: gcp.Annotations{NetworkTier: "STANDARD"}},
		{name: "premium tier", in: map[string]string{gcp.AnnotationNetworkTier: "PREMIUM"}, want: gcp.Annotations{NetworkTier: "PREMIUM"}},
		{name: "unknown tier", in: map[string]string{gcp.AnnotationNetworkTier: "GOLD"}, wantReason: "InvalidAnnotation"},
		{name: "empty tier", in: map[string]string{gcp.AnnotationNetworkTier: ""}, wantReason: "InvalidAnnotation"},
		{name: "unknown gcp key", in: map[string]string{gcp.AnnotationPrefix + "global-acces": "true"}, wantReason: "UnknownAnnotation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gcp.ParseAnnotations(tc.in)
			if tc.wantReason != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != tc.wantReason {
					t.Fatalf("got %+v, %v; want ConfigError %s", got, err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add(gcp.AnnotationAddressName, "web-ip", gcp.AnnotationNetworkTier, "standard")
	f.Add(gcp.AnnotationSubnet, "projects/p-1234/regions/r1/subnetworks/s", gcp.AnnotationAddressType, "ephemeral")
	f.Add(gcp.AnnotationPrefix+"x", "\x00", "lb.portico.dev/ip", "1.2.3.4")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		got, err := gcp.ParseAnnotations(map[string]string{k1: v1, k2: v2})
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason == "" {
				t.Fatalf("error %v is not a ConfigError with a reason", err)
			}
			if got != (gcp.Annotations{}) {
				t.Fatalf("error %v came with a non-zero result %+v", err, got)
			}
			return
		}
		if got.NetworkTier != "" && got.NetworkTier != "PREMIUM" && got.NetworkTier != "STANDARD" {
			t.Fatalf("tier %q escaped validation", got.NetworkTier)
		}
		if got.AddressType != "" && got.AddressType != gcp.AddressReserved && got.AddressType != gcp.AddressEphemeral {
			t.Fatalf("address type %q escaped validation", got.AddressType)
		}
		if len(got.AddressName) > 63 || strings.ContainsAny(got.AddressName, " /_") {
			t.Fatalf("address name %q escaped validation", got.AddressName)
		}
		if got.AddressName != "" && got.AddressType == gcp.AddressEphemeral {
			t.Fatal("contradicting address settings accepted")
		}
		// Parsing is a pure function.
		again, _ := gcp.ParseAnnotations(map[string]string{k1: v1, k2: v2})
		if again != got {
			t.Fatalf("two parses differ: %+v vs %+v", got, again)
		}
	})
}

func TestParseProviderID(t *testing.T) {
	tests := []struct {
		in                      string
		project, zone, instance string
		ok                      bool
	}{
		{"gce://my-proj/us-central1-a/node-1", "my-proj", "us-central1-a", "node-1", true},
		{"gce://my-proj/us-central1-a/", "", "", "", false},
		{"gce://my-proj/node-1", "", "", "", false},
		{"aws:///us-east-1a/i-0123", "", "", "", false},
		{"gce://a/b/c/d", "", "", "", false},
		{"", "", "", "", false},
	}
	for _, tc := range tests {
		p, z, i, ok := gcp.ParseProviderID(tc.in)
		if p != tc.project || z != tc.zone || i != tc.instance || ok != tc.ok {
			t.Errorf("ParseProviderID(%q) = %q %q %q %v", tc.in, p, z, i, ok)
		}
	}
}

func FuzzParseProviderID(f *testing.F) {
	f.Add("gce://my-proj/us-central1-a/node-1")
	f.Add("gce:///")
	f.Fuzz(func(t *testing.T, id string) {
		p, z, i, ok := gcp.ParseProviderID(id)
		if ok && (p == "" || z == "" || i == "" || "gce://"+p+"/"+z+"/"+i != id) {
			t.Fatalf("ParseProviderID(%q) = %q %q %q, which does not round-trip", id, p, z, i)
		}
		if !ok && (p != "" || z != "" || i != "") {
			t.Fatalf("failed parse returned parts")
		}
	})
}
