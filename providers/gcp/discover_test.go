package gcp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/protobuf/proto"

	"github.com/portico-lb/portico/providers/gcp"
)

// TestDiscoverFromMetadataServer serves the GCE metadata endpoints the
// provider reads and points the metadata library at them the documented way
// (GCE_METADATA_HOST).
func TestDiscoverFromMetadataServer(t *testing.T) {
	answers := map[string]string{
		"/computeMetadata/v1/project/project-id":                      "meta-project",
		"/computeMetadata/v1/instance/zone":                           "projects/123/zones/europe-west4-b",
		"/computeMetadata/v1/instance/network-interfaces/0/network":   "projects/123/networks/prod-vpc",
		"/computeMetadata/v1/instance/service-accounts/default/token": "must-not-be-read",
	}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path)
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		if v, ok := answers[r.URL.Path]; ok {
			_, _ = w.Write([]byte(v))
			return
		}
		if r.URL.Path == "/" || r.URL.Path == "/computeMetadata/v1/" {
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))

	o := gcp.Options{Network: "flag-network"}
	if err := gcp.Discover(context.Background(), &o); err != nil {
		t.Fatal(err)
	}
	if o.Project != "meta-project" || o.Region != "europe-west4" || o.Network != "flag-network" {
		t.Errorf("discovered %+v", o)
	}
	o = gcp.Options{}
	if err := gcp.Discover(context.Background(), &o); err != nil {
		t.Fatal(err)
	}
	if o.Network != "prod-vpc" {
		t.Errorf("network %q, want prod-vpc", o.Network)
	}
	for _, p := range asked {
		if strings.Contains(p, "token") {
			t.Errorf("discovery read credentials: %s", p)
		}
	}
}

// TestFingerprints drives the fake's optimistic locking with the real client.
func TestFingerprints(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("fp")
	if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80))); err != nil {
		t.Fatal(err)
	}
	bs := e.api.BackendServices
	get := func() *computepb.BackendService {
		b, err := bs.Get(t.Context(), &computepb.GetRegionBackendServiceRequest{Project: testProject, Region: testRegion, BackendService: gcp.BaseName(k)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	patch := func(fp *string) error {
		op, err := bs.Patch(t.Context(), &computepb.PatchRegionBackendServiceRequest{Project: testProject, Region: testRegion, BackendService: gcp.BaseName(k),
			BackendServiceResource: &computepb.BackendService{SessionAffinity: proto.String("CLIENT_IP"), Fingerprint: fp}})
		if err != nil {
			return err
		}
		return op.Wait(t.Context())
	}
	stale := get().Fingerprint
	if err := patch(stale); err != nil {
		t.Fatalf("patch with the current fingerprint: %v", err)
	}
	var ge *googleapi.Error
	if err := patch(stale); !errors.As(err, &ge) || ge.Code != http.StatusPreconditionFailed {
		t.Errorf("patch with a stale fingerprint: got %v, want 412", err)
	}
	if err := patch(nil); !errors.As(err, &ge) || ge.Code != http.StatusBadRequest {
		t.Errorf("patch without a fingerprint: got %v, want 400", err)
	}
	// The provider puts the affinity back, reading the fresh fingerprint.
	if _, err := e.p.Ensure(t.Context(), desired(k, []string{"node-a"}, ports(80))); err != nil {
		t.Fatal(err)
	}
	if a := get().GetSessionAffinity(); a != "NONE" {
		t.Errorf("affinity %q after Ensure, want NONE", a)
	}
}
