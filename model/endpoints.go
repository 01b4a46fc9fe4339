package model

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// EndpointNodes returns, per Service ("namespace/name"), the sorted names of
// the nodes holding a ready endpoint of it (Ready unset counts as ready, as
// in the EndpointSlice API). It is the one rule by which a node "has a local
// endpoint" for externalTrafficPolicy: Local, in L2 and BGP announcement.
func EndpointNodes(eps []discoveryv1.EndpointSlice) map[string][]string {
	out := map[string][]string{}
	for _, es := range eps {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := es.Namespace + "/" + svc
		for _, ep := range es.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[key] = append(out[key], *ep.NodeName)
			}
		}
	}
	for k, v := range out {
		out[k] = slices.Compact(slices.Sorted(slices.Values(v)))
	}
	return out
}

// LocalTraffic reports whether svc sends external traffic only to endpoints
// on the node it arrives at (externalTrafficPolicy: Local).
func LocalTraffic(svc *corev1.Service) bool {
	return svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}
