// Command portico-forwarder runs on every node for the local backend
// (class lb.portico.dev/local, the default class included: it serves the
// Services whose LoadBalancer record says local): it agrees with its peers,
// over a direct UDP heartbeat, which node announces each load-balancer
// address, answers ARP and NDP for the addresses this node won, moves their
// traffic in the kernel, and publishes the choice in LoadBalancer
// status.announcements. For IPPools announced by BGP it advertises host
// routes to the BGPPeers that select the node (docs/bgp.md). The wiring is
// in internal/forwarder.
//
// Listeners stay plain TCP (Go's default MPTCP refuses TCP MD5, which BGP
// passwords need).
//
//go:debug multipathtcp=0
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-lb/portico/bfd"
	"github.com/portico-lb/portico/internal/forwarder"
	"github.com/portico-lb/portico/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bfd.HelperArg {
		bfdHelper(os.Args[2:])
		return
	}
	fs := pflag.NewFlagSet("portico-forwarder", pflag.ContinueOnError)
	opts := forwarder.DefaultOptions()
	opts.AddFlags(fs)
	zapOpts := zap.Options{}
	goFlags := flag.NewFlagSet("", flag.ContinueOnError)
	zapOpts.BindFlags(goFlags)
	fs.AddGoFlagSet(goFlags)
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "portico-forwarder announces the addresses of the Services the operator serves through\n"+
			"lb.portico.dev/local (the default class included), each from\n"+
			"exactly one live node (ARP/NDP), and fails them over to another node within about\n"+
			"--dead-after when that node or its forwarder dies.\n\nUsage:\n  portico-forwarder [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.String("portico-forwarder"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if err := opts.Validate(); err != nil {
		log.Error(err, "Invalid flags")
		os.Exit(2)
	}
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), ctrl.Log)
	log.Info("Starting portico-forwarder", "version", version.Version, "node", opts.NodeName, "interface", opts.Interface)
	if err := forwarder.Run(ctx, opts); err != nil {
		log.Error(err, "Forwarder stopped")
		os.Exit(1)
	}
}

// bfdHelper runs the BFD sessions for the forwarder that started it
// (bfd.Helper): commands on standard input, state changes on standard
// output, logs on standard error. It exits when its input ends.
func bfdHelper(args []string) {
	fs := pflag.NewFlagSet("portico-forwarder "+bfd.HelperArg, pflag.ExitOnError)
	local := fs.StringArray("local", nil, "The node's address to run BFD from, at most one per family (repeat for both); a family without one uses every address of the family.")
	zapOpts := zap.Options{}
	goFlags := flag.NewFlagSet("", flag.ExitOnError)
	zapOpts.BindFlags(goFlags)
	fs.AddGoFlagSet(goFlags)
	_ = fs.Parse(args)
	log := zap.New(zap.UseFlagOptions(&zapOpts)).WithName("bgp").WithName("bfd")
	var addrs []netip.Addr
	for _, l := range *local {
		a, err := netip.ParseAddr(l)
		if err != nil {
			log.Error(err, "Invalid --local")
			os.Exit(2)
		}
		addrs = append(addrs, a)
	}
	if err := bfd.ServeHelper(addrs, os.Stdin, os.Stdout, log); err != nil {
		log.Error(err, "BFD helper stopped")
		os.Exit(1)
	}
	os.Exit(0)
}
