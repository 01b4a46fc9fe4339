package plugin

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/portico-lb/portico/api/v1alpha1"
)

func newPeersCommand(g *global) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "Show BGP sessions: every node's session with every BGPPeer, state, routes, last error",
		Long: `Show the BGPPeers of BGP mode (docs/bgp.md), one row per peer and node, as each
node's forwarder reports it in the BGPPeer's status: session state, how long it has
been established, how many prefixes the node advertises, and the last error (why a
session is Disabled or down). A peer no node reports on yet has one row with node
<none>. BGPPeers are cluster-scoped, so -n and -A do not apply.`,
		Example: `  kubectl lb peers
  kubectl lb peers -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.peers(cmd.Context(), output)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func (g *global) peers(ctx context.Context, output string) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	peers := &v1alpha1.BGPPeerList{}
	if err := list(ctx, c.Reader, peers, "bgppeers.lb.portico.dev", ""); err != nil {
		return err
	}
	sort.Slice(peers.Items, func(i, j int) bool { return peers.Items[i].Name < peers.Items[j].Name })
	peers.APIVersion, peers.Kind = v1alpha1.GroupVersion.String(), "BGPPeerList"
	for i := range peers.Items {
		peers.Items[i].APIVersion, peers.Items[i].Kind = v1alpha1.GroupVersion.String(), "BGPPeer"
	}
	if done, err := printObject(g.opts.Out, output, peers); done || err != nil {
		return err
	}
	if len(peers.Items) == 0 {
		fmt.Fprintln(g.opts.ErrOut, "No BGPPeers found.")
		return nil
	}
	now := g.opts.Now()
	t := newTable(g.opts.Out, "PEER", "ADDRESS", "PEER ASN", "MY ASN", "NODE", "STATE", "UP", "ROUTES", "LAST ERROR")
	for i := range peers.Items {
		p := &peers.Items[i]
		head := []string{p.Name, p.Spec.Address, fmt.Sprint(p.Spec.PeerASN), fmt.Sprint(p.Spec.MyASN)}
		sessions := append([]v1alpha1.BGPSession(nil), p.Status.Sessions...)
		sort.Slice(sessions, func(i, j int) bool { return sessions[i].Node < sessions[j].Node })
		if len(sessions) == 0 {
			t.row(append(head, "<none>", "-", "-", "-", "")...)
		}
		for _, s := range sessions {
			up := "-"
			if s.State == "Established" && s.EstablishedSince != nil {
				up = age(*s.EstablishedSince, now)
			}
			t.row(append(head, s.Node, s.State, up, fmt.Sprint(s.Advertised), s.LastError)...)
		}
	}
	return t.flush()
}
