// Command kubectl-lb is the kubectl plugin for Portico: put it on PATH and
// run "kubectl lb status", "kubectl lb cost", "kubectl lb describe <svc>" or
// "kubectl lb pools". See docs/kubectl-lb.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/portico-lb/portico/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Main(ctx, plugin.Options{
		IOStreams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	}, os.Args[1:])
	stop()
	os.Exit(code)
}
