package gcpfake_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
)

const (
	project = "p"
	region  = "r1"
	zone    = "r1-a"
)

func clients(t *testing.T, f *gcpfake.Server) (*compute.RegionHealthChecksClient, *compute.RegionBackendServicesClient, *compute.InstanceGroupsClient) {
	t.Helper()
	opts := []option.ClientOption{option.WithEndpoint(f.URL()), option.WithoutAuthentication()}
	hc, err := compute.NewRegionHealthChecksRESTClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := compute.NewRegionBackendServicesRESTClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ig, err := compute.NewInstanceGroupsRESTClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return hc, bs, ig
}

func code(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func TestOperationsConflictsAndReferences(t *testing.T) {
	f := gcpfake.New(gcpfake.Options{Project: project, Region: region, OpDelay: time.Hour})
	defer f.Close()
	hcs, bss, _ := clients(t, f)
	ctx := t.Context()
	insert := func() (*compute.Operation, error) {
		return hcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region,
			HealthCheckResource: &computepb.HealthCheck{Name: proto.String("hc"), Type: proto.String("TCP")}})
	}
	op, err := insert()
	if err != nil {
		t.Fatal(err)
	}
	if op.Done() {
		t.Fatal("insert returned a finished operation; it must complete later")
	}
	get := func() error {
		_, err := hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"})
		return err
	}
	if c := code(get()); c != http.StatusNotFound {
		t.Errorf("Get before the operation completed: %d, want 404", c)
	}
	if _, err := insert(); code(err) != http.StatusConflict {
		t.Errorf("second insert while the first is pending: %v, want 409", err)
	}
	f.Settle()
	if err := op.Wait(ctx); err != nil || !op.Done() {
		t.Fatalf("Wait after completion: %v", err)
	}
	if err := get(); err != nil {
		t.Fatalf("Get after completion: %v", err)
	}
	bop, err := bss.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("bs"), Protocol: proto.String("TCP"), LoadBalancingScheme: proto.String("EXTERNAL"),
		HealthChecks: []string{"projects/" + project + "/regions/" + region + "/healthChecks/hc"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.Settle()
	if err := bop.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = hcs.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"})
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest || len(ge.Errors) == 0 || ge.Errors[0].Reason != "resourceInUseByAnotherResource" {
		t.Errorf("deleting a health check a backend service uses: %v, want 400 resourceInUseByAnotherResource", err)
	}
	if _, err := bss.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("dangling"), HealthChecks: []string{"projects/" + project + "/regions/" + region + "/healthChecks/missing"},
	}}); code(err) != http.StatusBadRequest {
		t.Errorf("backend service over a missing health check: %v, want 400", err)
	}
}

func TestListInstancesPaginates(t *testing.T) {
	f := gcpfake.New(gcpfake.Options{Project: project, Region: region, MaxPageSize: 2})
	defer f.Close()
	_, _, igs := clients(t, f)
	ctx := t.Context()
	op, err := igs.Insert(ctx, &computepb.InsertInstanceGroupRequest{Project: project, Zone: zone, InstanceGroupResource: &computepb.InstanceGroup{Name: proto.String("g")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var refs []*computepb.InstanceReference
	for _, n := range []string{"i1", "i2", "i3", "i4", "i5"} {
		f.AddInstance(zone, n)
		refs = append(refs, &computepb.InstanceReference{Instance: proto.String("projects/" + project + "/zones/" + zone + "/instances/" + n)})
	}
	op, err = igs.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: project, Zone: zone, InstanceGroup: "g",
		InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: refs}})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	it := igs.ListInstances(ctx, &computepb.ListInstancesInstanceGroupsRequest{Project: project, Zone: zone, InstanceGroup: "g",
		InstanceGroupsListInstancesRequestResource: &computepb.InstanceGroupsListInstancesRequest{}})
	seen := map[string]bool{}
	for {
		inst, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[inst.GetInstance()] = true
	}
	pages := 0
	for _, c := range f.Calls() {
		if c.Method == http.MethodPost && len(c.Path) > 14 && c.Path[len(c.Path)-14:] == "/listInstances" {
			pages++
		}
	}
	if len(seen) != 5 || pages != 3 {
		t.Errorf("saw %d instances in %d pages, want 5 in 3", len(seen), pages)
	}
	if _, err := igs.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: project, Zone: zone, InstanceGroup: "g",
		InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: refs[:1]}}); code(err) != http.StatusBadRequest {
		t.Errorf("adding a member twice: %v, want 400", err)
	}
}

func TestInjectedFaultsAndCrash(t *testing.T) {
	f := gcpfake.New(gcpfake.Options{Project: project, Region: region})
	defer f.Close()
	hcs, _, _ := clients(t, f)
	ctx := t.Context()
	get := func() error {
		_, err := hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "x"})
		return err
	}
	// Throttling takes both shapes the API uses, in turn.
	f.Inject(gcpfake.Fault{Code: 429, Reason: "rateLimitExceeded", Times: 1})
	f.Inject(gcpfake.Throttle(1))
	var ge *googleapi.Error
	if err := get(); !errors.As(err, &ge) || ge.Code != 403 || ge.Errors[0].Reason != "rateLimitExceeded" {
		t.Errorf("first call: %v, want 403 rateLimitExceeded", err)
	}
	if c := code(get()); c != 429 {
		t.Errorf("second call: %d, want 429", c)
	}
	if c := code(get()); c != 404 {
		t.Errorf("third call: %d, want the real answer 404", c)
	}
	f.CrashAfter(0)
	if c := code(get()); c != 404 {
		t.Errorf("a read before the crash point: %d, want 404", c)
	}
	if _, err := hcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region,
		HealthCheckResource: &computepb.HealthCheck{Name: proto.String("x")}}); code(err) != 503 {
		t.Errorf("mutating call at the crash point: %v, want 503", err)
	}
	f.ClearFaults()
	if c := code(get()); c != 404 {
		t.Errorf("after recovery: %d, want 404 (the crashed insert never happened)", c)
	}
}

// TestOperationFailures: an operation the fault core fails is accepted (the
// insert call succeeds), ends DONE with error.errors[] in the API's shape, and
// leaves nothing behind.
func TestOperationFailures(t *testing.T) {
	f := gcpfake.New(gcpfake.Options{Project: project, Region: region})
	defer f.Close()
	hcs, _, _ := clients(t, f)
	ctx := t.Context()
	tests := []struct {
		kind     fault.Kind
		code     string
		httpCode int
	}{
		{fault.OpQuota, "QUOTA_EXCEEDED", 403},
		{fault.OpConflict, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", 400},
		{fault.OpSuperseded, "RESOURCE_NOT_READY", 400},
		{fault.OpInternal, "INTERNAL_ERROR", 500},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			f.Faults().FailOperations(fault.OpRule{Kind: tc.kind, Times: 1, Op: "insert healthChecks"})
			op, err := hcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region,
				HealthCheckResource: &computepb.HealthCheck{Name: proto.String("hc"), Type: proto.String("TCP")}})
			if err != nil {
				t.Fatalf("the insert call itself must succeed: %v", err)
			}
			werr := op.Wait(ctx)
			var ae *apierror.APIError
			if !errors.As(werr, &ae) || ae.HTTPCode() != tc.httpCode {
				t.Fatalf("Wait: %v, want HTTP %d", werr, tc.httpCode)
			}
			errs := op.Proto().GetError().GetErrors()
			if op.Proto().GetStatus() != computepb.Operation_DONE || len(errs) != 1 || errs[0].GetCode() != tc.code {
				t.Fatalf("operation %v, want DONE with %s", op.Proto(), tc.code)
			}
			if tc.kind == fault.OpQuota {
				q := errs[0].GetErrorDetails()[0].GetQuotaInfo()
				if q.GetMetricName() != "compute.googleapis.com/health_checks" || q.GetLimit() != 8 || q.GetDimensions()["region"] != region {
					t.Errorf("quota info %v", q)
				}
			}
			if _, err := hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"}); code(err) != 404 {
				t.Errorf("a failed insert left the resource: %v", err)
			}
		})
	}
	if s := f.Faults().Stats(); s.OperationsFailed != len(tests) {
		t.Errorf("stats count %d failed operations, want %d", s.OperationsFailed, len(tests))
	}
}
