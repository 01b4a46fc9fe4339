package pricing

// PublicRegions lists, per cost kind, the public regions of its cloud that
// the embedded catalog must price (a test holds it to that), as of
// RegionsAsOf. The providers accept any region name; this is the list
// Portico promises a cost for without a ConfigMap. Sovereign and isolated
// partitions (AWS GovCloud and China, Azure Government and China, GCP
// sovereign clouds) bill in other price lists and are left to the price
// ConfigMap or --live-prices.
//
// Sources: AWS https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html,
// Google Cloud https://cloud.google.com/compute/docs/regions-zones,
// Azure https://learn.microsoft.com/en-us/azure/reliability/regions-list.
var PublicRegions = map[string][]string{
	"aws-nlb": {
		"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
		"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
		"ap-southeast-5", "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2",
		"eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1",
		"me-central-1", "me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1",
		"us-west-2",
	},
	"gcp-forwarding-rule": {
		"africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
		"asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
		"australia-southeast2", "europe-central2", "europe-north1", "europe-north2", "europe-southwest1",
		"europe-west1", "europe-west10", "europe-west12", "europe-west2", "europe-west3", "europe-west4",
		"europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1",
		"northamerica-northeast1", "northamerica-northeast2", "northamerica-south1", "southamerica-east1",
		"southamerica-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
		"us-west2", "us-west3", "us-west4",
	},
	"azure-standard-lb": {
		"australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "brazilsouth",
		"brazilsoutheast", "canadacentral", "canadaeast", "centralindia", "centralus", "chilecentral",
		"eastasia", "eastus", "eastus2", "francecentral", "francesouth", "germanynorth",
		"germanywestcentral", "indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest",
		"jioindiacentral", "jioindiawest", "koreacentral", "koreasouth", "malaysiawest", "mexicocentral",
		"newzealandnorth", "northcentralus", "northeurope", "norwayeast", "norwaywest", "polandcentral",
		"qatarcentral", "southafricanorth", "southafricawest", "southcentralus", "southeastasia",
		"southindia", "spaincentral", "swedencentral", "switzerlandnorth", "switzerlandwest", "uaecentral",
		"uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope", "westindia", "westus", "westus2",
		"westus3",
	},
}

// RegionsAsOf is the date PublicRegions was compiled.
const RegionsAsOf = "2026-11-30"
