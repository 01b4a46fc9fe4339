package azure

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/providers"
)

func TestCloudConfiguration(t *testing.T) {
	tests := []struct {
		name, cloud, endpoint string
		wantARM, wantAAD      string
		wantErr               bool
	}{
		{name: "default", wantARM: "https://management.azure.com", wantAAD: "https://login.microsoftonline.com/"},
		{name: "china", cloud: "AzureChina", wantARM: "https://management.chinacloudapi.cn", wantAAD: "https://login.chinacloudapi.cn/"},
		{name: "government, azure.json spelling", cloud: "AzureUSGovernmentCloud", wantARM: "https://management.usgovcloudapi.net", wantAAD: "https://login.microsoftonline.us/"},
		{name: "endpoint override", cloud: "AzurePublic", endpoint: "https://arm.example.test/", wantARM: "https://arm.example.test", wantAAD: "https://login.microsoftonline.com/"},
		{name: "unknown cloud", cloud: "AzureMoon", wantErr: true},
		{name: "plain http endpoint", endpoint: "http://arm.example.test", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := CloudConfiguration(tc.cloud, tc.endpoint)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Services[cloud.ResourceManager].Endpoint; got != tc.wantARM {
				t.Errorf("ARM endpoint = %s, want %s", got, tc.wantARM)
			}
			if cfg.Services[cloud.ResourceManager].Audience == "" {
				t.Error("no token audience")
			}
			if cfg.ActiveDirectoryAuthorityHost != tc.wantAAD {
				t.Errorf("authority = %s, want %s", cfg.ActiveDirectoryAuthorityHost, tc.wantAAD)
			}
		})
	}
}

func TestConfigFlagsOverrideFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "azure.json")
	doc := `{"cloud":"AzurePublicCloud","tenantId":"t","aadClientSecret":"do-not-read","subscriptionId":"sub-file",
"resourceGroup":"rg-file","location":"westeurope","vnetName":"vnet","subnetName":"subnet","securityGroupName":"nsg"}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var c Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--azure-cloud-config", file, "--azure-resource-group", "rg-flag", "--azure-poll-interval", "2s"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.resolve()
	if err != nil {
		t.Fatal(err)
	}
	o := got.options()
	if o.SubscriptionID != "sub-file" || o.ResourceGroup != "rg-flag" || o.Location != "westeurope" || o.VNetName != "vnet" || o.SecurityGroupName != "nsg" {
		t.Errorf("merged options = %+v", o)
	}
	if strings.Contains(strings.ToLower(got.SubscriptionID+got.ResourceGroup), "do-not-read") {
		t.Error("a secret leaked into the settings")
	}
}

func TestConfigRejectsFastPolling(t *testing.T) {
	c := Config{SubscriptionID: "s", ResourceGroup: "rg", Location: "l", PollInterval: 100 * time.Millisecond}
	if _, err := c.resolve(); err == nil || !strings.Contains(err.Error(), "--azure-poll-interval") {
		t.Fatalf("got %v, want an error about --azure-poll-interval", err)
	}
}

func TestConfigMissingSettings(t *testing.T) {
	c := Config{SubscriptionID: "s"}
	_, err := c.Factory()(context.Background(), providers.Options{ClusterID: "c"})
	if err == nil || !strings.Contains(err.Error(), "--azure-resource-group") {
		t.Fatalf("got %v, want an error naming the missing flags", err)
	}
}

// FuzzParseFileConfig: arbitrary files never panic the parser.
func FuzzParseFileConfig(f *testing.F) {
	f.Add([]byte(`{"subscriptionId":"s","resourceGroup":"rg","location":"l"}`))
	f.Add([]byte(`{"cloud": 1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseFileConfig(data)
		if err != nil {
			return
		}
		c := Config{}
		c.mergeFile(fc)
		if c.SubscriptionID != fc.SubscriptionID {
			t.Fatal("merge into empty flags must take the file's value")
		}
	})
}
