// Package operator assembles portico-operator: flags, the explicit map of
// backends, the manager and the Service controller. cmd/portico-operator is a
// thin main around it; tests run the same code in-process.
package operator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/eventrec"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/pricing/sources"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/azure"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/memory"
	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

// BackendConfig is a backend's own settings: its --<name>-* flags and the
// factory bound to them.
type BackendConfig interface {
	AddFlags(fs *pflag.FlagSet)
	Factory() providers.Factory
}

// backends is the explicit map of every backend the operator can run
// (no init() registration): name -> a fresh config.
func backends() map[string]BackendConfig {
	return map[string]BackendConfig{
		aws.Name:    &aws.Config{},
		azure.Name:  &azure.Config{},
		gcp.Name:    &gcp.Config{},
		local.Name:  &local.Config{},
		memory.Name: &memory.Config{},
	}
}

// Options are the operator's settings.
type Options struct {
	Kubeconfig string
	// Providers are the enabled backends by name (class lb.portico.dev/<name>).
	Providers    []string
	DefaultClass string
	ClusterID    string

	MetricsAddr, ProbeAddr string
	// MetricsSecure serves metrics over TLS to callers the cluster
	// authenticates and authorizes for GET /metrics.
	MetricsSecure    bool
	LeaderElect      bool
	LeaderElectionNS string
	LeaderElectionID string

	Workers         int
	NodeBatchWindow time.Duration
	// RecordPassQuiet: see controllers.ServiceReconciler (no flag; tests
	// lengthen it).
	RecordPassQuiet    time.Duration
	ResyncPeriod       time.Duration
	ConfigErrorBackoff time.Duration
	RetryBase          time.Duration
	RetryMax           time.Duration
	// ProviderCallTimeout bounds each backend call; ReconcileTimeout each
	// reconcile.
	ProviderCallTimeout time.Duration
	ReconcileTimeout    time.Duration
	QPS                 float32
	Burst               int
	// PprofAddr serves net/http/pprof for profiling; "" or "0" disables it.
	PprofAddr string

	// Backends holds every backend's config, bound to flags.
	Backends map[string]BackendConfig
	// Instances, when set, are used instead of building backends from
	// their configs (tests share an in-memory cloud with the operator); a
	// nil entry is no instance (the class's backend is built).
	Instances map[string]providers.Provider
	// PriceConfigMap (namespace/name) overrides the embedded prices; empty
	// uses the embedded prices alone.
	PriceConfigMap string
	// PriceRefresh is how often the price ConfigMap is re-read.
	PriceRefresh time.Duration
	// Pricer, when set, replaces the embedded catalog (tests).
	Pricer controllers.Pricer
	// OrphanScanInterval is how often backends are scanned for resources
	// with this cluster's marks and no Service; zero disables the scan.
	OrphanScanInterval time.Duration
	// DeleteOrphans lets the scan delete what two scans in a row found.
	DeleteOrphans bool
	// LivePrices configures the live price APIs (--live-prices).
	LivePrices sources.Config
	// UsageMetrics configures metered usage (--usage-metrics).
	UsageMetrics meters.Config
	// Usage, when set, replaces the meters built from UsageMetrics (tests).
	Usage controllers.UsageMeter
}

// DefaultOptions returns the operator's defaults.
func DefaultOptions() *Options {
	return &Options{
		Providers:           []string{"local"},
		MetricsAddr:         ":8443",
		MetricsSecure:       true,
		ProbeAddr:           ":8081",
		LeaderElectionID:    "portico-operator.lb.portico.dev",
		Workers:             16,
		NodeBatchWindow:     time.Second,
		ResyncPeriod:        10 * time.Minute,
		ConfigErrorBackoff:  5 * time.Minute,
		RetryBase:           time.Second,
		RetryMax:            5 * time.Minute,
		ProviderCallTimeout: 3 * time.Minute,
		ReconcileTimeout:    10 * time.Minute,
		PriceConfigMap:      InstallNamespace() + "/portico-prices",
		PriceRefresh:        time.Minute,
		OrphanScanInterval:  10 * time.Minute,
		QPS:                 200,
		Burst:               400,
		Backends:            backends(),
	}
}

// AddFlags registers the operator's flags and every backend's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig; empty uses in-cluster config or $KUBECONFIG.")
	fs.StringSliceVar(&o.Providers, "providers", o.Providers, "Backends to enable, comma-separated, from: "+strings.Join(o.backendNames(), ", ")+". Each serves class lb.portico.dev/<name>.")
	fs.StringVar(&o.DefaultClass, "default-class", o.DefaultClass, "Class that also takes LoadBalancer Services without spec.loadBalancerClass, e.g. lb.portico.dev/local. Empty leaves them to other controllers.")
	fs.StringVar(&o.ClusterID, "cluster-id", o.ClusterID, "Identifies this cluster in cloud resource names and the portico.dev/cluster ownership mark: lowercase letters, digits and '-', at most 63 characters. Must be unique per cloud account, project and resource group and stable for the cluster's life. Empty (the default) derives k8s-<16 hex digits> from the kube-system namespace's UID; the ID in use is logged at start.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure, "Serve metrics over HTTPS only to callers the cluster authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview; bind the portico-metrics-reader ClusterRole). The metrics carry every Service's cost. --metrics-secure=false serves plain HTTP to anyone who reaches the port.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address of the /healthz and /readyz endpoints; \"0\" disables them.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader on a Lease so that only one replica reconciles.")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", o.LeaderElectionNS, "Namespace of the leader-election Lease; empty uses the pod's namespace.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader-election Lease.")
	fs.IntVar(&o.Workers, "workers", o.Workers, "Services reconciled concurrently.")
	fs.DurationVar(&o.NodeBatchWindow, "node-batch-window", o.NodeBatchWindow, "Node changes are folded into at most one backend update per load balancer per window.")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", o.ResyncPeriod, "How often an unchanged load balancer is re-checked against its backend to repair drift (no mutating calls when nothing drifted).")
	fs.DurationVar(&o.ConfigErrorBackoff, "config-error-backoff", o.ConfigErrorBackoff, "Retry delay for problems the user must fix (bad annotations, exhausted pools); a change to the Service retries at once.")
	fs.DurationVar(&o.RetryBase, "retry-base-delay", o.RetryBase, "First retry delay after a transient backend error that suggests no delay; doubles per failure.")
	fs.DurationVar(&o.RetryMax, "retry-max-delay", o.RetryMax, "Longest retry delay after transient backend errors.")
	fs.DurationVar(&o.ProviderCallTimeout, "provider-call-timeout", o.ProviderCallTimeout, "Longest a backend call (Ensure, Observe, Delete, including its cloud operations) may take; expiry is retried with backoff. With several backends, one class holds at most half of --workers, so a slow cloud cannot starve the others.")
	fs.DurationVar(&o.ReconcileTimeout, "reconcile-timeout", o.ReconcileTimeout, "Longest one Service's reconcile may take; must exceed --provider-call-timeout.")
	fs.StringVar(&o.PriceConfigMap, "price-configmap", o.PriceConfigMap, "ConfigMap (namespace/name) whose prices override the embedded, dated price catalog (docs/cost.md); the default is portico-prices in the namespace Portico runs in ($POD_NAMESPACE); empty uses the embedded prices. Invalid price data sets the Priced condition False rather than a cost of zero.")
	fs.DurationVar(&o.PriceRefresh, "price-refresh-interval", o.PriceRefresh, "How often the price ConfigMap is re-read.")
	fs.DurationVar(&o.OrphanScanInterval, "orphan-scan-interval", o.OrphanScanInterval, "How often each cloud backend is scanned for resources that carry this cluster's ownership marks but belong to no Service; they are counted in portico_orphaned_resources, listed in the portico-orphans ConfigMap ('kubectl lb orphans') and reported as an Event. 0 disables the scan.")
	fs.BoolVar(&o.DeleteOrphans, "delete-orphans", o.DeleteOrphans, "Delete orphans that two scans in a row found, after re-reading from the API server that no Service claims them, through the backend's ownership checks. Off by default: orphans are only reported.")
	o.LivePrices.AddFlags(fs)
	o.UsageMetrics.AddFlags(fs)
	fs.Float32Var(&o.QPS, "kube-api-qps", o.QPS, "Queries per second to the Kubernetes API.")
	fs.IntVar(&o.Burst, "kube-api-burst", o.Burst, "Burst of queries to the Kubernetes API.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "Address of Go's profiling endpoints (/debug/pprof/), for diagnosing CPU and memory; empty or \"0\" (the default) disables them. They are unauthenticated: bind to localhost and reach them with kubectl port-forward.")
	for _, name := range o.backendNames() {
		o.Backends[name].AddFlags(fs)
	}
}

func (o *Options) backendNames() []string {
	names := make([]string, 0, len(o.Backends))
	for n := range o.Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RESTConfig loads the kubeconfig named by --kubeconfig, $KUBECONFIG or the
// in-cluster config.
func (o *Options) RESTConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		cfg, err = ctrl.GetConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	cfg.UserAgent = "portico-operator"
	return cfg, nil
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if len(o.Providers) == 0 {
		errs = append(errs, errors.New("--providers: enable at least one backend"))
	}
	for _, p := range o.Providers {
		if _, ok := o.Backends[p]; !ok && o.Instances[providers.Class(p)] == nil {
			errs = append(errs, fmt.Errorf("--providers: unknown backend %q (known: %s)", p, strings.Join(o.backendNames(), ", ")))
		}
	}
	if o.DefaultClass != "" && !slices.Contains(o.Providers, strings.TrimPrefix(o.DefaultClass, providers.ClassPrefix)) {
		errs = append(errs, fmt.Errorf("--default-class %s: its backend is not enabled in --providers", o.DefaultClass))
	}
	if o.PriceConfigMap != "" {
		if ns, name, ok := strings.Cut(o.PriceConfigMap, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("--price-configmap %q: want namespace/name", o.PriceConfigMap))
		}
	}
	if err := o.LivePrices.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.UsageMetrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.ClusterID != "" {
		if err := providers.ValidateClusterID(o.ClusterID); err != nil {
			errs = append(errs, fmt.Errorf("--cluster-id: %w", err))
		}
	}
	if o.ProviderCallTimeout < 0 || o.ReconcileTimeout < 0 || o.ReconcileTimeout > 0 && o.ProviderCallTimeout > 0 && o.ReconcileTimeout <= o.ProviderCallTimeout {
		errs = append(errs, fmt.Errorf("--reconcile-timeout (%s) must exceed --provider-call-timeout (%s)", o.ReconcileTimeout, o.ProviderCallTimeout))
	}
	if o.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	return errors.Join(errs...)
}

// Run builds the manager and runs it until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o *Options) error {
	mgr, _, err := New(ctx, cfg, o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// metricsOptions serves metrics with authentication and authorization
// unless --metrics-secure=false (controller-runtime generates a self-signed
// certificate when none is mounted).
func (o *Options) metricsOptions() metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// InstallNamespace is the namespace the operator runs in: $POD_NAMESPACE
// (the manifests set it from the Downward API), else portico-system.
func InstallNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "portico-system"
}

// cacheOptions trims what the informers keep: no object's managedFields
// (Portico never reads them), and of a Node only what package model reads
// (trimNode). At thousands of Nodes and Services this is most of the cache.
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			// Leases are read (the forwarders' byte snapshots) only in
			// the install namespace, where the Role allows it.
			&coordinationv1.Lease{}:      {Namespaces: map[string]cache.Config{InstallNamespace(): {}}},
			&corev1.Node{}:               {Transform: transform(trimNode)},
			&corev1.Service{}:            {Transform: transform(trimService)},
			&discoveryv1.EndpointSlice{}: {Transform: transform(trimEndpointSlice)},
			&lbv1.LoadBalancer{}:         {Transform: transform(trimRecord)},
		},
	}
}

// transform makes trim a cache transform. A ByObject transform replaces
// DefaultTransform, so each trim drops managedFields itself.
func transform[T any](trim func(T) T) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if o, ok := obj.(T); ok {
			return trim(o), nil
		}
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
}

// trimService keeps of a Service Portico serves or still holds (type
// LoadBalancer, or Portico's finalizer) everything but kubectl's
// last-applied configuration, a second copy of the spec nothing in Portico
// reads. Of every other Service (in a real cluster most of them) it keeps
// only what shows that Portico has nothing to do with it: identity, type,
// class, finalizers and deletion. The operator writes Services only by
// patches computed against the cached copy, so a dropped field is never
// written back.
func trimService(s *corev1.Service) *corev1.Service {
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer || slices.Contains(s.Finalizers, controllers.Finalizer) {
		s.ManagedFields = nil
		if _, ok := s.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
			s.Annotations = maps.Clone(s.Annotations)
			delete(s.Annotations, corev1.LastAppliedConfigAnnotation)
		}
		shareRepeatedValues(s)
		return s
	}
	return &corev1.Service{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, UID: s.UID, ResourceVersion: s.ResourceVersion,
			Generation: s.Generation, CreationTimestamp: s.CreationTimestamp, DeletionTimestamp: s.DeletionTimestamp,
			Finalizers: s.Finalizers},
		Spec: corev1.ServiceSpec{Type: s.Spec.Type, LoadBalancerClass: s.Spec.LoadBalancerClass},
	}
}

// shareRepeatedValues makes the strings of s that repeat across thousands of
// Services (namespace, finalizers, type, class, port names and protocols,
// policies, IP families and mode, the conditions' types, statuses and
// reasons, and the messages of True conditions, which are fixed sentences)
// the one shared copy of each value: the decoder allocates every string of
// every object anew, about 300 bytes per Service. Values are unchanged.
func shareRepeatedValues(s *corev1.Service) {
	s.Namespace = intern(s.Namespace)
	for i := range s.Finalizers {
		s.Finalizers[i] = intern(s.Finalizers[i])
	}
	sp := &s.Spec
	sp.Type, sp.SessionAffinity, sp.ExternalTrafficPolicy = intern(sp.Type), intern(sp.SessionAffinity), intern(sp.ExternalTrafficPolicy)
	internPtr(sp.LoadBalancerClass)
	internPtr(sp.InternalTrafficPolicy)
	internPtr(sp.IPFamilyPolicy)
	for i := range sp.IPFamilies {
		sp.IPFamilies[i] = intern(sp.IPFamilies[i])
	}
	for i := range sp.Ports {
		p := &sp.Ports[i]
		p.Name, p.Protocol, p.TargetPort.StrVal = intern(p.Name), intern(p.Protocol), intern(p.TargetPort.StrVal)
		internPtr(p.AppProtocol)
	}
	for i := range s.Status.LoadBalancer.Ingress {
		internPtr(s.Status.LoadBalancer.Ingress[i].IPMode)
	}
	for i := range s.Status.Conditions {
		c := &s.Status.Conditions[i]
		c.Type, c.Status, c.Reason = intern(c.Type), intern(c.Status), intern(c.Reason)
		if c.Status == metav1.ConditionTrue {
			c.Message = intern(c.Message)
		}
	}
}

// trimRecord keeps all of a LoadBalancer record but its managedFields (the
// operator compares and patches its whole status), with the values that
// repeat across records shared (shareRepeatedRecordValues).
func trimRecord(rec *lbv1.LoadBalancer) *lbv1.LoadBalancer {
	rec.ManagedFields = nil
	shareRepeatedRecordValues(rec)
	return rec
}

// shareRepeatedRecordValues makes the strings of rec that repeat across
// thousands of records (namespace, owner reference kind, class, IP modes
// and nodes, protocols, resource kinds, readiness, the cost's amounts,
// currency, source and basis, the conditions' types, statuses and reasons
// and the messages of True conditions) the one shared copy of each value:
// the JSON decoder allocates every string of every record anew. Values are
// unchanged.
func shareRepeatedRecordValues(rec *lbv1.LoadBalancer) {
	rec.Namespace = intern(rec.Namespace)
	for i := range rec.OwnerReferences {
		o := &rec.OwnerReferences[i]
		o.APIVersion, o.Kind = intern(o.APIVersion), intern(o.Kind)
	}
	for i := range rec.Finalizers {
		rec.Finalizers[i] = intern(rec.Finalizers[i])
	}
	rec.Spec.Class = intern(rec.Spec.Class)
	st := &rec.Status
	st.Class, st.Ready, st.BackendsSummary, st.MonthlyCost = intern(st.Class), intern(st.Ready), intern(st.BackendsSummary), intern(st.MonthlyCost)
	for i := range st.Addresses {
		a := &st.Addresses[i]
		a.IPMode, a.Node = intern(a.IPMode), intern(a.Node)
	}
	for i := range st.Ports {
		st.Ports[i].Protocol = intern(st.Ports[i].Protocol)
	}
	for i := range st.Resources {
		st.Resources[i].Kind = intern(st.Resources[i].Kind)
	}
	for i := range st.Announcements {
		st.Announcements[i].Node = intern(st.Announcements[i].Node)
	}
	if st.Endpoints != nil {
		for i := range st.Endpoints.Nodes {
			st.Endpoints.Nodes[i] = intern(st.Endpoints.Nodes[i])
		}
	}
	if c := st.Cost; c != nil {
		c.Hourly, c.Monthly, c.Currency, c.Source = intern(c.Hourly), intern(c.Monthly), intern(c.Currency), intern(c.Source)
		c.Region, c.Basis, c.Fixed, c.SourceError = intern(c.Region), intern(c.Basis), intern(c.Fixed), intern(c.SourceError)
		for i := range c.Breakdown {
			b := &c.Breakdown[i]
			b.Item, b.Hourly = intern(b.Item), intern(b.Hourly)
		}
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.Type, c.Status, c.Reason = intern(c.Type), intern(c.Status), intern(c.Reason)
		if c.Status == metav1.ConditionTrue {
			c.Message = intern(c.Message)
		}
	}
}

// intern returns the shared copy of v (unique.Make).
func intern[S ~string](v S) S {
	if v == "" {
		return v
	}
	return S(unique.Make(string(v)).Value())
}

// internPtr replaces *p, when p is set, by its shared copy.
func internPtr[S ~string](p *S) {
	if p != nil {
		*p = intern(*p)
	}
}

// trimEndpointSlice keeps of an EndpointSlice what the desired state and
// the Serving condition read (controllers.Desired, model.EndpointNodes): the
// Service label, each endpoint's addresses, node and conditions, and the
// ports. The pods' references, hostnames, zones, hints, owner references
// and annotations are dropped; the operator never writes an EndpointSlice.
func trimEndpointSlice(es *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{
		TypeMeta: es.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: es.Name, UID: es.UID, ResourceVersion: es.ResourceVersion,
			Generation: es.Generation, CreationTimestamp: es.CreationTimestamp, DeletionTimestamp: es.DeletionTimestamp,
			Labels: es.Labels},
		AddressType: es.AddressType,
		Ports:       es.Ports,
		Endpoints:   make([]discoveryv1.Endpoint, len(es.Endpoints)),
	}
	for i, e := range es.Endpoints {
		out.Endpoints[i] = discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: e.Conditions, NodeName: e.NodeName}
	}
	return out
}

// trimNode keeps of n what the operator's decisions read (model.EligibleNode,
// model.ProviderNode, model.NodeChanged): name, labels, deletion, provider ID,
// taints, the Ready condition and the addresses. The kubelet's system info,
// capacity, images, volumes and other conditions, and every annotation, are
// dropped: nothing in the operator reads them, and the operator never writes
// a Node, so no write can lose them.
func trimNode(n *corev1.Node) *corev1.Node {
	out := &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			Generation: n.Generation, CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp,
			Labels: n.Labels},
		Spec:   corev1.NodeSpec{ProviderID: n.Spec.ProviderID, Taints: n.Spec.Taints},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{c}
		}
	}
	return out
}

// New builds the manager with the Service controller; the caller starts it.
func New(ctx context.Context, cfg *rest.Config, o *Options) (manager.Manager, *controllers.ServiceReconciler, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Metrics:                       o.metricsOptions(),
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		// Several managers share a process in tests.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:      cacheOptions(),
		// controller-runtime serves pprof when the address is neither
		// empty nor "0".
		PprofBindAddress: o.PprofAddr,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating manager: %w", err)
	}
	// The Service controller and the local backend read one Service's
	// EndpointSlices by index, not by walking the namespace.
	if err := kubeindex.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, nil, fmt.Errorf("indexing the cache: %w", err)
	}
	id, err := ResolveClusterID(ctx, mgr.GetAPIReader(), o.ClusterID)
	if err != nil {
		return nil, nil, err
	}
	// One Event recorder for the process, with bounded memory, writing as
	// many Events at once as the workers that record them.
	rec, err := eventrec.ForManager(mgr, "portico-operator", o.Workers)
	if err != nil {
		return nil, nil, err
	}
	reportClusterID(mgr, rec, id)
	// The reconciler exists before the backends so that their hooks can
	// reach it.
	r := &controllers.ServiceReconciler{}
	provs := map[string]providers.Provider{}
	for _, name := range o.Providers {
		class := providers.Class(name)
		if p := o.Instances[class]; p != nil {
			provs[class] = p
			continue
		}
		p, err := o.Backends[name].Factory()(ctx, providers.Options{ClusterID: id.ID, Client: mgr.GetClient(),
			Hooks: providers.Hooks{RetryPending: func() { r.NotifyPending(class) }, Reensure: r.Reensure}})
		if err != nil {
			return nil, nil, fmt.Errorf("starting backend %s: %w", name, err)
		}
		provs[class] = p
	}
	// Backends with controllers of their own register them (before the
	// Service controller wraps each backend with its metrics).
	for _, class := range slices.Sorted(maps.Keys(provs)) {
		if s, ok := provs[class].(providers.ControllerSetup); ok {
			if err := s.SetupWithManager(mgr, rec); err != nil {
				return nil, nil, fmt.Errorf("setting up the controllers of backend %s: %w", class, err)
			}
		}
	}
	pricer, err := o.pricer(ctx, mgr)
	if err != nil {
		return nil, nil, err
	}
	meter, err := o.usageMeter(ctx, mgr)
	if err != nil {
		return nil, nil, err
	}
	*r = controllers.ServiceReconciler{
		Client:             mgr.GetClient(),
		Cache:              mgr.GetCache(),
		Recorder:           rec,
		Metrics:            sharedMetrics(),
		Pricer:             pricer,
		Usage:              meter,
		CostMetrics:        sharedCostMetrics(),
		Providers:          provs,
		DefaultClass:       o.DefaultClass,
		ClusterID:          id.ID,
		NodeBatchWindow:    o.NodeBatchWindow,
		RecordPassQuiet:    o.RecordPassQuiet,
		ResyncPeriod:       o.ResyncPeriod,
		ConfigErrorBackoff: o.ConfigErrorBackoff,
		RetryBase:          o.RetryBase,
		RetryMax:           o.RetryMax,
		CallTimeout:        o.ProviderCallTimeout,
	}
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: o.Workers, ReconciliationTimeout: o.ReconcileTimeout}); err != nil {
		return nil, nil, fmt.Errorf("setting up Service controller: %w", err)
	}
	if o.OrphanScanInterval > 0 {
		if err := mgr.Add(&controllers.OrphanScanner{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Recorder: rec,
			Providers: r.Providers, ClusterID: id.ID, Namespace: InstallNamespace(),
			Interval: o.OrphanScanInterval, CallTimeout: o.ProviderCallTimeout, Delete: o.DeleteOrphans,
			Gauge: sharedOrphanGauge(),
		}); err != nil {
			return nil, nil, err
		}
	}
	sharedNotReady().SetSource(mgr.GetCache(), r.Classes)
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, nil, err
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	return mgr, r, nil
}

// reportClusterID logs the cluster ID in use at start and, once this replica
// leads, records it as an Event on the kube-system namespace, where
// `kubectl describe namespace kube-system` shows it.
func reportClusterID(mgr manager.Manager, rec events.EventRecorder, id ClusterIdentity) {
	log := ctrl.Log.WithName("setup")
	log.Info("Using cluster ID", "clusterID", id.ID, "derived", id.Derived, "source", id.Source)
	if id.ID == legacyClusterID {
		log.Info("The cluster ID is Portico's former default, which every cluster left on the default shares; give each cluster sharing a cloud account its own --cluster-id", "clusterID", id.ID)
	}
	_ = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		ns := &corev1.Namespace{}
		if err := mgr.GetAPIReader().Get(ctx, types.NamespacedName{Name: IdentityNamespace}, ns); err != nil {
			log.V(1).Info("Not recording the cluster ID as an Event", "error", err.Error())
			return nil
		}
		rec.Eventf(ns, nil, corev1.EventTypeNormal, ReasonClusterIdentity, "Start",
			"portico-operator uses cluster ID %s (from %s)", id.ID, id.Source)
		return nil
	}))
}

// legacyClusterID was the default --cluster-id before the ID was derived.
const legacyClusterID = "kubernetes"

// sharedMetrics registers Portico's metrics on controller-runtime's registry
// once per process, however many managers it runs.
var sharedMetrics = sync.OnceValue(func() *controllers.Metrics {
	return controllers.NewMetrics(metrics.Registry)
})

var sharedOrphanGauge = sync.OnceValue(func() *prometheus.GaugeVec {
	return controllers.NewOrphanGauge(metrics.Registry)
})

var sharedNotReady = sync.OnceValue(func() *controllers.NotReadyMetric {
	m := controllers.NewNotReadyMetric()
	metrics.Registry.MustRegister(m)
	return m
})

var sharedCostMetrics = sync.OnceValue(func() *pricing.Metrics {
	m := pricing.NewMetrics()
	metrics.Registry.MustRegister(m)
	return m
})

// usageMeter returns the usage tracker of the enabled backends' meters
// (--usage-metrics), running as a runnable; nil when metering is off or
// no enabled backend has a meter.
func (o *Options) usageMeter(ctx context.Context, mgr manager.Manager) (controllers.UsageMeter, error) {
	if o.Usage != nil {
		return o.Usage, nil
	}
	if c, ok := o.Backends[aws.Name].(*aws.Config); ok && o.UsageMetrics.AWSRegion == "" {
		o.UsageMetrics.AWSRegion = c.Region
	}
	if c, ok := o.Backends[azure.Name].(*azure.Config); ok && slices.Contains(o.Providers, azure.Name) && o.UsageMetrics.Enabled {
		cfg, err := azure.CloudConfiguration(c.Cloud, c.ARMEndpoint)
		if err != nil {
			return nil, err
		}
		o.UsageMetrics.AzureCloud = cfg
	}
	// The local meter reads the forwarders' Leases through the cache
	// (namespaced to InstallNamespace, see cacheOptions).
	o.UsageMetrics.Leases, o.UsageMetrics.Namespace = mgr.GetCache(), InstallNamespace()
	ms, err := o.UsageMetrics.Build(ctx, o.Providers)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	for _, m := range ms {
		// A meter that keeps its own tally (local) polls on its own.
		if r, ok := m.(manager.Runnable); ok {
			if err := mgr.Add(r); err != nil {
				return nil, err
			}
		}
	}
	log := ctrl.Log.WithName("usage")
	// Every load balancer is asked about at least once per resync.
	forget := 3 * max(o.UsageMetrics.Interval, o.ResyncPeriod)
	t, err := usage.NewTracker(usage.Options{Meters: ms, Interval: o.UsageMetrics.Interval, ForgetAfter: forget, OnError: func(kind, region string, err error) {
		log.Error(err, "Usage not read; keeping the last good reading", "kind", kind, "region", region)
	}})
	if err != nil {
		return nil, err
	}
	return t, mgr.Add(manager.RunnableFunc(t.Run))
}

// pricer returns the catalog: the embedded prices, overridden by the price
// ConfigMap, which a runnable re-reads every PriceRefresh, and with
// --live-prices the price APIs of the enabled clouds, which another
// runnable re-reads every --live-price-interval.
func (o *Options) pricer(ctx context.Context, mgr manager.Manager) (controllers.Pricer, error) {
	if o.Pricer != nil {
		return o.Pricer, nil
	}
	base, err := pricing.Embedded()
	if err != nil {
		return nil, fmt.Errorf("embedded prices: %w", err)
	}
	live, err := pricing.NewLive(base)
	if err != nil {
		return nil, fmt.Errorf("embedded prices: %w", err)
	}
	log := ctrl.Log.WithName("pricing")
	var pricer controllers.Pricer = live
	srcs, err := o.LivePrices.Build(ctx, o.Providers)
	if err != nil {
		return nil, fmt.Errorf("live price sources: %w", err)
	}
	if len(srcs) > 0 {
		opts := o.LivePrices.Options(srcs)
		opts.OnError = func(kind, region string, err error) {
			log.Error(err, "Live prices not refreshed; keeping the last good or the embedded prices", "kind", kind, "region", region)
		}
		r, err := pricing.NewRefresher(live, opts)
		if err != nil {
			return nil, fmt.Errorf("live prices: %w", err)
		}
		if err := mgr.Add(manager.RunnableFunc(r.Run)); err != nil {
			return nil, err
		}
		pricer = r
	}
	if o.PriceConfigMap == "" {
		return pricer, nil
	}
	ns, name, _ := strings.Cut(o.PriceConfigMap, "/")
	key := types.NamespacedName{Namespace: ns, Name: name}
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return live.Run(ctx, mgr.GetAPIReader(), key, o.PriceRefresh, func(err error) {
			log.Error(err, "Price ConfigMap not applied", "configMap", key.String())
		})
	}))
	return pricer, err
}
