//go:build tools

// Package tools pins kwok (sigs.k8s.io/kwok), the simulated kubelets of the
// test control plane. It has a module of its own because kwok is built
// against other k8s.io versions than the k8s.io/kubernetes pins of
// hack/tools/go.mod; forcing one set on the other would build neither as
// released.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
