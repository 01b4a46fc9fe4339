package operator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/portico-lb/portico/internal/testenv"
)

// TestMetricsNeedAuthorization: the metrics endpoint (it carries every
// Service's cost) is served over TLS and answers only callers the cluster
// authenticates (TokenReview) and authorizes for GET /metrics
// (SubjectAccessReview), the operator holding nothing but its generated RBAC.
func TestMetricsNeedAuthorization(t *testing.T) {
	env := testenv.Start(t)
	cfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	o := DefaultOptions()
	o.ClusterID = "metrics"
	o.MetricsAddr, o.ProbeAddr = addr, "0"
	o.PriceConfigMap = ""
	if !o.MetricsSecure {
		t.Fatal("metrics are served without authentication by default")
	}
	mgr, _, err := New(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	cs := kubernetes.NewForConfigOrDie(env.Config)
	token := func(name string, reader bool) string {
		t.Helper()
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if reader {
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "portico-metrics-reader"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}}}
			if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "portico-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(bearer string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	stranger, reader := token("stranger", false), token("prometheus", true)
	testenv.Eventually(t, 30*time.Second, func() error {
		code, body, err := get(reader)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "portico_") {
			return fmt.Errorf("authorized scrape: %d %.200s", code, body)
		}
		return nil
	})
	for _, tc := range []struct {
		who, token string
		want       int
	}{{"anonymous", "", http.StatusUnauthorized}, {"an unauthorized ServiceAccount", stranger, http.StatusForbidden},
		// The apiserver refuses to review a malformed token: the filter
		// fails closed (500), never open.
		{"a forged token", "not-a-token", 0}} {
		code, body, err := get(tc.token)
		if err != nil || code == http.StatusOK || tc.want != 0 && code != tc.want || strings.Contains(body, "portico_") {
			t.Errorf("%s: %d (%v), want %d and no metrics", tc.who, code, err, tc.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("metrics served over plain HTTP")
		}
	}
}
