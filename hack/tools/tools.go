//go:build tools

// Package tools pins the Go programs Portico's build and tests use: the
// control plane (kube-apiserver, kube-controller-manager, etcd, kubectl) built
// from module sources (kwok has its own module, hack/tools/kwok), and
// the code generators and linters. See the Makefile target "tools".
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "helm.sh/helm/v4/cmd/helm"
	_ "honnef.co/go/tools/cmd/staticcheck"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
