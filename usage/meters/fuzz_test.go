package meters_test

import (
	"strings"
	"testing"

	"github.com/portico-lb/portico/usage/meters"
)

// FuzzNLBDimension: load balancer ARNs come from the AWS API; a dimension
// is only ever the tail of a well-formed NLB ARN.
func FuzzNLBDimension(f *testing.F) {
	f.Add(arn("web", "50dc6c495c0c9188"))
	f.Add("arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/1")
	f.Add("arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/web/1/extra")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := meters.NLBDimension(s)
		if err != nil {
			if d != "" {
				t.Fatalf("error %v with dimension %q", err, d)
			}
			return
		}
		if !strings.HasPrefix(d, "net/") || !strings.HasSuffix(s, ":loadbalancer/"+d) || strings.Count(d, "/") != 2 {
			t.Fatalf("NLBDimension(%q) = %q", s, d)
		}
	})
}
