package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/portico-lb/portico/providers"
	awsp "github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/e2e"
)

// TestRealAccount is `make e2e-aws`: against a real AWS account it creates a
// load balancer over the given instances, sends HTTP through it, adds a
// port, deletes it, and lists anything left with the run's ownership marks.
// It needs credentials in the SDK's default chain and a test network:
//
//	PORTICO_E2E_AWS_INSTANCES  comma-separated instance IDs serving HTTP on
//	                           PORTICO_E2E_AWS_NODEPORTS (default 30080,30081)
//	PORTICO_E2E_AWS_SUBNETS    public subnets, one per zone (else discovery by
//	                           kubernetes.io/role/elb and PORTICO_E2E_AWS_CLUSTER_NAME)
//	AWS_REGION                 the region
func TestRealAccount(t *testing.T) {
	instances := strings.Split(os.Getenv("PORTICO_E2E_AWS_INSTANCES"), ",")
	if instances[0] == "" {
		t.Skip("e2e-aws: skipped, PORTICO_E2E_AWS_INSTANCES is not set (see docs/providers/aws.md, \"Checks on a real account\")")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Skipf("e2e-aws: skipped, no AWS configuration: %v", err)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		t.Skipf("e2e-aws: skipped, no AWS credentials: %v", err)
	}
	nodePorts := []int32{30080, 30081}
	if v := os.Getenv("PORTICO_E2E_AWS_NODEPORTS"); v != "" {
		nodePorts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("PORTICO_E2E_AWS_NODEPORTS: %v", err)
			}
			nodePorts = append(nodePorts, int32(n))
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	run := "e2e-" + hex.EncodeToString(b)
	t.Logf("run %s: resources carry portico.dev/cluster=%s", run, run)
	p, err := awsp.New(awsp.Options{ClusterID: run, ClusterName: os.Getenv("PORTICO_E2E_AWS_CLUSTER_NAME"), AWS: cfg, AllowUntaggedSubnets: true})
	if err != nil {
		t.Fatal(err)
	}
	elb, ec := elbv2.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
	key := providers.Key{ClusterID: run, Namespace: "e2e", Name: "web", UID: run}
	d := &providers.LoadBalancer{Key: key, Class: p.Class(), TrafficPolicy: providers.TrafficPolicyCluster,
		Ports: []providers.Port{{Name: "http", Protocol: providers.TCP, Port: 80, NodePort: nodePorts[0], TargetPort: nodePorts[0]}}}
	if s := os.Getenv("PORTICO_E2E_AWS_SUBNETS"); s != "" {
		d.Annotations = map[string]string{awsp.AnnotationSubnets: s}
	}
	for i, id := range instances {
		d.Nodes = append(d.Nodes, providers.Node{Name: fmt.Sprintf("node-%d", i), ProviderID: "aws:///zone/" + strings.TrimSpace(id)})
	}
	defer func() {
		// Whatever happened, leave nothing behind.
		_ = retry(ctx, 10*time.Minute, func() error { return p.Delete(ctx, key) })
		cleanBackendGroup(t, ec, run)
		left, err := e2e.Leftovers(context.Background(), elb, ec, run, true)
		if err != nil {
			t.Errorf("listing leftovers: %v", err)
		}
		for _, l := range left {
			t.Errorf("left behind: %s %v", l, l.Tags)
		}
	}()

	var st *providers.Status
	step := func(name string, f func() error) {
		t.Helper()
		start := time.Now()
		if err := retry(ctx, 10*time.Minute, f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %s", name, time.Since(start).Round(time.Second))
	}
	step("create", func() (err error) { st, err = p.Ensure(ctx, d); return err })
	host := st.Ingress[0].Hostname
	step("targets healthy", func() error { return healthy(ctx, p, key, len(instances)) })
	step("HTTP through port 80", func() error { return get(ctx, "http://"+host+":80/") })

	if len(nodePorts) > 1 {
		d.Ports = append(d.Ports, providers.Port{Name: "alt", Protocol: providers.TCP, Port: 8080, NodePort: nodePorts[1], TargetPort: nodePorts[1]})
		step("add port 8080", func() (err error) { st, err = p.Ensure(ctx, d); return err })
		step("HTTP through port 8080", func() error { return get(ctx, "http://"+host+":8080/") })
	}
	step("delete", func() error { return p.Delete(ctx, key) })
	left, err := e2e.Leftovers(ctx, elb, ec, run, false)
	if err != nil || len(left) != 0 {
		t.Errorf("after delete: %v left (%v)", left, err)
	}
}

// retry calls f every 10 s until it succeeds, d passes, or it fails with
// something only a person can fix (a ConfigError).
func retry(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		var ce *providers.ConfigError
		if err == nil || errors.As(err, &ce) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(10 * time.Second)
	}
}

func healthy(ctx context.Context, p *awsp.Provider, key providers.Key, n int) error {
	st, err := p.Observe(ctx, key)
	if err != nil {
		return err
	}
	if st.Backends.Healthy != n {
		return fmt.Errorf("%d of %d targets healthy", st.Backends.Healthy, st.Backends.Total)
	}
	return nil
}

func get(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// cleanBackendGroup removes the run's backend security group, which
// Portico keeps on purpose: first the node rules that name it, then it.
func cleanBackendGroup(t *testing.T, ec *ec2.Client, run string) {
	ctx := context.Background()
	name := awsp.BackendSecurityGroupName(run)
	out, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{name}}, {Name: aws.String("tag:" + providers.TagCluster), Values: []string{run}}}})
	if err != nil || len(out.SecurityGroups) == 0 {
		return
	}
	id := aws.ToString(out.SecurityGroups[0].GroupId)
	refs, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("ip-permission.group-id"), Values: []string{id}}}})
	if err == nil {
		for _, g := range refs.SecurityGroups {
			var perms []ec2types.IpPermission
			for _, perm := range g.IpPermissions {
				for _, pair := range perm.UserIdGroupPairs {
					if aws.ToString(pair.GroupId) == id {
						perms = append(perms, ec2types.IpPermission{IpProtocol: perm.IpProtocol, FromPort: perm.FromPort, ToPort: perm.ToPort,
							UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(id)}}})
					}
				}
			}
			if len(perms) > 0 {
				if _, err := ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: g.GroupId, IpPermissions: perms}); err != nil {
					t.Errorf("revoking the run's rules on %s: %v", aws.ToString(g.GroupId), err)
				}
			}
		}
	}
	_ = retry(ctx, 10*time.Minute, func() error {
		_, err := ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
		return err
	})
}
