package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/providers"
)

// Config holds the operator flags of the azure backend. Values left empty
// are read from the cloud config file (azure.json, as AKS and
// cloud-provider-azure write it) when one is given.
type Config struct {
	CloudConfigFile string
	Cloud           string
	ARMEndpoint     string

	SubscriptionID             string
	ResourceGroup              string
	Location                   string
	VNetName                   string
	VNetResourceGroup          string
	SubnetName                 string
	SecurityGroupName          string
	SecurityGroupResourceGroup string
	LoadBalancerName           string
	AllowedResourceGroups      []string
	OutboundSNAT               bool

	BatchWindow  time.Duration
	PollInterval time.Duration
}

// AddFlags registers --azure-* flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CloudConfigFile, "azure-cloud-config", "", "Path of an azure.json cloud config file (cloud-provider-azure format) supplying subscription, resource group, location, VNet, subnet and security group; flags override it. Credentials in it are ignored: Portico authenticates only through DefaultAzureCredential.")
	fs.StringVar(&c.Cloud, "azure-cloud", "", "Azure cloud: AzurePublic (default), AzureChina or AzureGovernment.")
	fs.StringVar(&c.ARMEndpoint, "azure-arm-endpoint", "", "Override of the Azure Resource Manager endpoint URL (Azure Stack, proxies); the token audience stays the chosen cloud's.")
	fs.StringVar(&c.SubscriptionID, "azure-subscription-id", "", "Subscription that holds the cluster's network resources.")
	fs.StringVar(&c.ResourceGroup, "azure-resource-group", "", "Resource group where Portico creates load balancers and public IPs (for AKS, the node resource group MC_*).")
	fs.StringVar(&c.Location, "azure-location", "", "Azure region of the cluster, e.g. westeurope.")
	fs.StringVar(&c.VNetName, "azure-vnet-name", "", "Virtual network of the nodes; backend pools address nodes by IP in it.")
	fs.StringVar(&c.VNetResourceGroup, "azure-vnet-resource-group", "", "Resource group of the virtual network (default: --azure-resource-group).")
	fs.StringVar(&c.SubnetName, "azure-subnet-name", "", "Default subnet for internal load balancer frontends.")
	fs.StringVar(&c.SecurityGroupName, "azure-security-group-name", "", "Network security group of the nodes (on AKS: aks-agentpool-*-nsg in the node resource group). Portico adds per Service an inbound rule from its loadBalancerSourceRanges to its backends and, when ranges are set, a deny rule for every other source. Empty: no NSG rules are managed, and Services with loadBalancerSourceRanges are refused (SourceRangesNotEnforceable).")
	fs.StringVar(&c.SecurityGroupResourceGroup, "azure-security-group-resource-group", "", "Resource group of the network security group (default: --azure-resource-group).")
	fs.StringVar(&c.LoadBalancerName, "azure-load-balancer-name", "", "Name of the cluster's shared public Standard load balancer; the internal one gets the suffix -internal (default portico-<cluster-id>).")
	fs.StringSliceVar(&c.AllowedResourceGroups, "azure-allowed-resource-groups", nil, "Resource groups besides --azure-resource-group whose public IP prefixes Services may name (azure.lb.portico.dev/public-ip-prefix): names in --azure-subscription-id or /subscriptions/<id>/resourceGroups/<name>. Anything else is refused (ResourceNotAllowed).")
	fs.BoolVar(&c.OutboundSNAT, "azure-outbound-snat", false, "Let the rules of Portico's public load balancer provide the nodes' outbound SNAT. Off by default: the nodes already reach the internet through the cluster's own outbound path (AKS's load balancer outbound rule, a NAT gateway), so Portico's rules set disableOutboundSnat. Turn on only for nodes with no other outbound path.")
	fs.DurationVar(&c.BatchWindow, "azure-batch-window", 500*time.Millisecond, "How long writes to a shared load balancer are collected before one PUT carries them all.")
	fs.DurationVar(&c.PollInterval, "azure-poll-interval", 5*time.Second, "Polling interval of long-running ARM operations when Azure sends no Retry-After (minimum 1s).")
}

// Factory returns a providers.Factory bound to c. The credential is
// azidentity.DefaultAzureCredential: Workload Identity, managed identity,
// environment variables or the Azure CLI, in that chain's order.
func (c *Config) Factory() providers.Factory {
	return func(_ context.Context, opts providers.Options) (providers.Provider, error) {
		settings, err := c.resolve()
		if err != nil {
			return nil, err
		}
		cfg, err := CloudConfiguration(settings.Cloud, settings.ARMEndpoint)
		if err != nil {
			return nil, err
		}
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: azcore.ClientOptions{Cloud: cfg},
		})
		if err != nil {
			return nil, fmt.Errorf("azure credentials: %w", err)
		}
		o := settings.options()
		o.ClusterID = opts.ClusterID
		o.Credential = cred
		o.ClientOptions = &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: cfg}}
		return New(o)
	}
}

// FileConfig is the subset of cloud-provider-azure's azure.json that Portico
// reads. Secrets in the file (aadClientSecret and the like) are deliberately
// not part of it.
type FileConfig struct {
	Cloud                      string `json:"cloud"`
	ResourceManagerEndpoint    string `json:"resourceManagerEndpoint"`
	SubscriptionID             string `json:"subscriptionId"`
	ResourceGroup              string `json:"resourceGroup"`
	Location                   string `json:"location"`
	VNetName                   string `json:"vnetName"`
	VNetResourceGroup          string `json:"vnetResourceGroup"`
	SubnetName                 string `json:"subnetName"`
	SecurityGroupName          string `json:"securityGroupName"`
	SecurityGroupResourceGroup string `json:"securityGroupResourceGroup"`
	LoadBalancerName           string `json:"loadBalancerName"`
}

// ParseFileConfig parses an azure.json document.
func ParseFileConfig(data []byte) (FileConfig, error) {
	var fc FileConfig
	if err := json.Unmarshal(data, &fc); err != nil {
		return FileConfig{}, fmt.Errorf("parsing azure cloud config: %w", err)
	}
	return fc, nil
}

// resolve merges the flags over the cloud config file.
func (c *Config) resolve() (Config, error) {
	out := *c
	if c.CloudConfigFile != "" {
		data, err := os.ReadFile(c.CloudConfigFile)
		if err != nil {
			return Config{}, fmt.Errorf("--azure-cloud-config: %w", err)
		}
		fc, err := ParseFileConfig(data)
		if err != nil {
			return Config{}, fmt.Errorf("--azure-cloud-config %s: %w", c.CloudConfigFile, err)
		}
		out.mergeFile(fc)
	}
	var missing []string
	for flag, v := range map[string]string{"--azure-subscription-id": out.SubscriptionID, "--azure-resource-group": out.ResourceGroup, "--azure-location": out.Location} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Config{}, fmt.Errorf("azure backend needs %s (flags or the cloud config file)", strings.Join(missing, ", "))
	}
	if out.PollInterval < time.Second {
		// The SDK refuses to poll more often outside tests.
		return Config{}, fmt.Errorf("--azure-poll-interval %s: must be at least 1s", out.PollInterval)
	}
	if out.BatchWindow < 0 {
		return Config{}, fmt.Errorf("--azure-batch-window %s: must not be negative", out.BatchWindow)
	}
	return out, nil
}

func (c *Config) mergeFile(fc FileConfig) {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&c.Cloud, fc.Cloud)
	set(&c.ARMEndpoint, fc.ResourceManagerEndpoint)
	set(&c.SubscriptionID, fc.SubscriptionID)
	set(&c.ResourceGroup, fc.ResourceGroup)
	set(&c.Location, fc.Location)
	set(&c.VNetName, fc.VNetName)
	set(&c.VNetResourceGroup, fc.VNetResourceGroup)
	set(&c.SubnetName, fc.SubnetName)
	set(&c.SecurityGroupName, fc.SecurityGroupName)
	set(&c.SecurityGroupResourceGroup, fc.SecurityGroupResourceGroup)
	set(&c.LoadBalancerName, fc.LoadBalancerName)
}

func (c *Config) options() Options {
	return Options{
		SubscriptionID:             c.SubscriptionID,
		ResourceGroup:              c.ResourceGroup,
		Location:                   c.Location,
		VNetName:                   c.VNetName,
		VNetResourceGroup:          c.VNetResourceGroup,
		SubnetName:                 c.SubnetName,
		SecurityGroupName:          c.SecurityGroupName,
		SecurityGroupResourceGroup: c.SecurityGroupResourceGroup,
		LoadBalancerName:           c.LoadBalancerName,
		AllowedResourceGroups:      c.AllowedResourceGroups,
		OutboundSNAT:               c.OutboundSNAT,
		BatchWindow:                c.BatchWindow,
		PollInterval:               c.PollInterval,
	}
}

// Resource Manager endpoints and token audiences of the sovereign clouds.
var armServices = map[string]cloud.ServiceConfiguration{
	"azurepublic":     {Endpoint: "https://management.azure.com", Audience: "https://management.core.windows.net/"},
	"azurechina":      {Endpoint: "https://management.chinacloudapi.cn", Audience: "https://management.core.chinacloudapi.cn"},
	"azuregovernment": {Endpoint: "https://management.usgovcloudapi.net", Audience: "https://management.core.usgovcloudapi.net"},
}

// CloudConfiguration returns the SDK cloud configuration for name
// (AzurePublic, AzureChina, AzureGovernment, or cloud-provider-azure's
// AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud), with the Resource
// Manager endpoint replaced by endpoint when it is not empty.
func CloudConfiguration(name, endpoint string) (cloud.Configuration, error) {
	var cfg cloud.Configuration
	key := strings.ToLower(name)
	switch key {
	case "", "azurepublic", "azurepubliccloud":
		cfg, key = cloud.AzurePublic, "azurepublic"
	case "azurechina", "azurechinacloud":
		cfg, key = cloud.AzureChina, "azurechina"
	case "azuregovernment", "azureusgovernment", "azureusgovernmentcloud":
		cfg, key = cloud.AzureGovernment, "azuregovernment"
	default:
		return cloud.Configuration{}, fmt.Errorf("--azure-cloud %q: want AzurePublic, AzureChina or AzureGovernment", name)
	}
	svc := armServices[key]
	if endpoint != "" {
		if !strings.HasPrefix(endpoint, "https://") {
			return cloud.Configuration{}, fmt.Errorf("--azure-arm-endpoint %q: must be an https URL", endpoint)
		}
		svc.Endpoint = strings.TrimSuffix(endpoint, "/")
	}
	out := cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.ActiveDirectoryAuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}}
	for k, v := range cfg.Services {
		out.Services[k] = v
	}
	out.Services[cloud.ResourceManager] = svc
	return out, nil
}
