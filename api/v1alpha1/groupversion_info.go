// Package v1alpha1 holds Portico's API types of group lb.portico.dev. It
// imports nothing heavier than apimachinery, so clients can vendor it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=lb.portico.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of Portico's objects.
	GroupVersion = schema.GroupVersion{Group: "lb.portico.dev", Version: "v1alpha1"}

	// SchemeBuilder registers Portico's types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds Portico's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&LoadBalancer{}, &LoadBalancerList{},
		&IPPool{}, &IPPoolList{},
		&BGPPeer{}, &BGPPeerList{},
		&BGPAdvertisement{}, &BGPAdvertisementList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
