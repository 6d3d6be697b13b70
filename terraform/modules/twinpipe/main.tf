# The whole platform for one environment: identities, platform services (KMS, bucket, registry,
# alert topic), network and the GKE cluster. envs/{dev,prod} only set variables and state.

module "iam" {
  source     = "../iam"
  project_id = var.project_id
  name       = var.name
}

module "platform" {
  source                   = "../platform"
  project_id               = var.project_id
  region                   = var.region
  name                     = var.name
  workload_service_account = module.iam.workload_service_account
  vertex_service_account   = module.iam.vertex_service_account
  dataflow_service_account = module.iam.dataflow_service_account
  landing_writers          = var.landing_writers
  labels                   = var.labels
}

module "network" {
  source     = "../network"
  project_id = var.project_id
  region     = var.region
  name       = var.name
}

module "gke" {
  source                     = "../gke"
  project_id                 = var.project_id
  region                     = var.region
  name                       = var.name
  network                    = module.network.network
  subnetwork                 = module.network.subnetwork
  pods_range                 = module.network.pods_range
  services_range             = module.network.services_range
  node_service_account       = module.iam.node_service_account
  kms_key                    = module.platform.kms_key
  release_channel            = var.release_channel
  master_authorized_networks = var.master_authorized_networks
  rbac_security_group        = var.rbac_security_group
  cpu_max_nodes              = var.cpu_max_nodes
  gpu_type                   = var.gpu_type
  gpu_count                  = var.gpu_count
  gpu_machine_type           = var.gpu_machine_type
  gpu_max_nodes              = var.gpu_max_nodes
  labels                     = var.labels
}
