// Package plugin implements kubectl-lb, the kubectl plugin that answers "what
// is this load balancer, is it healthy, and what does it cost" from Portico's
// LoadBalancer and IPPool objects:
//
//	kubectl lb status            every load balancer at a glance
//	kubectl lb cost              cost totals by namespace, class or region
//	kubectl lb describe <svc>    one load balancer in depth
//	kubectl lb pools             IPPool usage
//	kubectl lb orphans           cloud resources of this cluster that no Service owns
//
// It follows kubectl's conventions: the k8s.io/cli-runtime connection flags
// (--kubeconfig, --context, -n, ...), -A, and -o table|wide|json|yaml.
// cmd/kubectl-lb is a thin main around Main.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/internal/version"
)

// Options wire the plugin to its surroundings; tests replace the clients and
// the clock.
type Options struct {
	genericiooptions.IOStreams
	// Now is the clock for ages and accrued cost; nil means time.Now.
	Now func() time.Time
	// NewClients connects to the cluster the flags name; nil means
	// RealClients.
	NewClients func(flags *genericclioptions.ConfigFlags) (*Clients, error)
}

// Clients are what the commands read the cluster through.
type Clients struct {
	// Reader reads Portico's objects, Services, Events and Leases.
	Reader client.Reader
	// Discovery tells whether the lb.portico.dev API is served.
	Discovery discovery.ServerResourcesInterface
	// Namespace is the namespace of the current context, or -n.
	Namespace string
}

// RealClients connects with the kubeconfig, context and namespace the
// cli-runtime flags select. Discovery is not cached, so a freshly installed
// or removed CRD is seen at once.
func RealClients(flags *genericclioptions.ConfigFlags) (*Clients, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	return &Clients{Reader: c, Discovery: dc, Namespace: ns}, nil
}

// Main runs the plugin with args (without the program name), prints any
// error to ErrOut, and returns the process exit code (see ExitCode).
func Main(ctx context.Context, opts Options, args []string) int {
	cmd := NewCommand(opts)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(opts.ErrOut, "error:", err)
	return ExitCode(err)
}

// global holds what every sub-command shares.
type global struct {
	opts          Options
	flags         *genericclioptions.ConfigFlags
	allNamespaces bool
	operatorNS    string
	operatorLease string
}

// NewCommand returns the kubectl-lb root command.
func NewCommand(opts Options) *cobra.Command {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewClients == nil {
		opts.NewClients = RealClients
	}
	g := &global{opts: opts, flags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-lb",
		Short: "Status, cost and health of Portico load balancers",
		Long: `kubectl lb shows what Portico built for Services of type LoadBalancer, whether it
is healthy, and what it costs, from the LoadBalancer and IPPool objects of
lb.portico.dev.

Exit codes: 0 success, 1 error, 2 bad usage, 3 Portico's CRDs are not
installed, 4 the operator is not running, 5 permission denied.`,
		Version:       version.String("kubectl-lb"),
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl lb"},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(opts.In)
	root.SetOut(opts.Out)
	root.SetErr(opts.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	g.flags.AddFlags(pf)
	pf.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "List load balancers in every namespace; the namespace flag is ignored.")
	pf.StringVar(&g.operatorNS, "operator-namespace", "portico-system", "Namespace of portico-operator's leader-election Lease, used to tell whether the operator is running.")
	pf.StringVar(&g.operatorLease, "operator-lease", "portico-operator.lb.portico.dev", "Name of portico-operator's leader-election Lease (its --leader-election-id).")

	root.AddCommand(newStatusCommand(g), newCostCommand(g), newDescribeCommand(g), newPoolsCommand(g), newOrphansCommand(g), newPeersCommand(g))
	return root
}

// connect builds the clients and checks that Portico's API is installed.
func (g *global) connect(ctx context.Context) (*Clients, error) {
	c, err := g.opts.NewClients(g.flags)
	if err != nil {
		return nil, err
	}
	if err := checkAPI(c.Discovery); err != nil {
		return nil, err
	}
	return c, nil
}

// scope is the namespace to list in; "" lists every namespace.
func (g *global) scope(c *Clients) string {
	if g.allNamespaces {
		return ""
	}
	return c.Namespace
}

func usageError(err error) error {
	return &Error{Code: ExitUsage, Err: err}
}

// errorsAs is errors.As with the target type inferred.
func errorsAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}
