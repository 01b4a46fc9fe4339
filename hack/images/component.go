package main

// component is one of Portico's images.
type component struct {
	Name        string // image name under the registry: ghcr.io/portico-lb/<Name>
	Binary      string // ./cmd/<Binary>, installed as /<Binary>
	Description string
	// User runs the entrypoint. The forwarder is root: it programs
	// nftables and opens raw sockets (its Pod grants NET_ADMIN and NET_RAW
	// only); the others run as the unprivileged 65532.
	User string
	// Debs are the Debian packages in the image: the forwarder's nft binary
	// (sigs.k8s.io/knftables executes it) and the shared libraries it
	// loads, down to the C library. A test resolves every ELF dependency
	// in the image, so a missing one fails there, not on a node.
	Debs []string
}

const nonRoot = 65532

var components = []component{
	{Name: "operator", Binary: "portico-operator", User: "65532:65532",
		Description: "Portico's operator: gives Services of type LoadBalancer an address on AWS, GCP, Azure or bare metal"},
	{Name: "forwarder", Binary: "portico-forwarder", User: "0:0",
		Description: "Portico's local-mode forwarder: announces addresses (ARP/NDP) and forwards with nftables",
		Debs: []string{"nftables", "libnftables1", "libedit2", "libbsd0", "libmd0", "libtinfo6",
			"libmnl0", "libnftnl11", "libxtables12", "libjansson4", "libgmp10", "libc6"}},
	{Name: "kubectl-lb", Binary: "kubectl-lb", User: "65532:65532",
		Description: "kubectl lb: shows what each of Portico's load balancers does and costs"},
}

func componentNamed(name string) (component, bool) {
	for _, c := range components {
		if c.Name == name {
			return c, true
		}
	}
	return component{}, false
}
