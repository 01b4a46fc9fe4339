// Package scheme builds the runtime.Scheme every Portico binary and test uses:
// client-go's built-in types plus lb.portico.dev/v1alpha1.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// New returns a scheme with client-go's and Portico's types.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail
	}
	if err := lbv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
