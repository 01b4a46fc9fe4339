// Command portico-operator reconciles Services of type LoadBalancer whose
// loadBalancerClass is one of Portico's (lb.portico.dev/<backend>).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/version"
)

func main() {
	fs := pflag.NewFlagSet("portico-operator", pflag.ContinueOnError)
	opts := operator.DefaultOptions()
	opts.AddFlags(fs)
	zapOpts := zap.Options{}
	goFlags := flag.NewFlagSet("", flag.ContinueOnError)
	zapOpts.BindFlags(goFlags)
	fs.AddGoFlagSet(goFlags)
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "portico-operator gives Services of type LoadBalancer an external address from the backend of their\n"+
			"loadBalancerClass (lb.portico.dev/aws, gcp, azure, local), and explains any <pending> with the\n"+
			"Service condition lb.portico.dev/Ready and Events.\n\nUsage:\n  portico-operator [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.String("portico-operator"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	cfg, err := opts.RESTConfig()
	if err != nil {
		log.Error(err, "Loading kubeconfig")
		os.Exit(1)
	}
	log.Info("Starting portico-operator", "version", version.Version, "providers", strings.Join(opts.Providers, ","))
	if err := operator.Run(ctx, cfg, opts); err != nil {
		log.Error(err, "Operator stopped")
		os.Exit(1)
	}
}
