package gcp

import (
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// TestOperationErrorsClassify: a failed Operation is classified by its
// error.errors[].code (and, lacking one, its httpErrorStatusCode).
func TestOperationErrorsClassify(t *testing.T) {
	done := computepb.Operation_DONE
	op := func(httpCode int32, code string) *computepb.Operation {
		o := &computepb.Operation{Status: &done, HttpErrorStatusCode: proto.Int32(httpCode), HttpErrorMessage: proto.String("X")}
		if code != "" {
			o.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(code), Message: proto.String("m")}}}
		}
		return o
	}
	tests := []struct {
		op   *computepb.Operation
		want kind
	}{
		{op(403, "QUOTA_EXCEEDED"), kindQuota},
		{op(500, "INTERNAL_ERROR"), kindOpRetry},
		{op(400, "RESOURCE_NOT_READY"), kindOpRetry},
		{op(400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"), kindOpRetry},
		{op(404, "RESOURCE_NOT_FOUND"), kindNotFound},
		{op(409, "RESOURCE_ALREADY_EXISTS"), kindExists},
		{op(412, "CONDITION_NOT_MET"), kindStale},
		{op(403, "PERMISSION_DENIED"), kindDenied},
		{op(400, "INVALID_FIELD_VALUE"), kindInvalid},
		{op(503, ""), kindOpRetry},
	}
	for _, tc := range tests {
		oe := operationError(tc.op)
		if oe == nil {
			t.Fatalf("%v: no error read", tc.op)
		}
		if got := classify(oe); got != tc.want {
			t.Errorf("%s/%d: kind %d, want %d", oe.Code, oe.HTTPCode, got, tc.want)
		}
	}
	running := computepb.Operation_RUNNING
	if operationError(&computepb.Operation{Status: &running}) != nil || operationError(&computepb.Operation{Status: &done}) != nil {
		t.Error("a running or successful operation read as failed")
	}
}
