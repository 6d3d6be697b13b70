# twinpipe dev: state in GCS, everything else in modules/twinpipe.
terraform {
  required_version = ">= 1.5"
  backend "gcs" {
    # bucket is passed at init: terraform init -backend-config="bucket=<PROJECT>-tfstate"
    prefix = "twinpipe/dev"
  }
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "twinpipe" {
  source                     = "../../modules/twinpipe"
  project_id                 = var.project_id
  region                     = var.region
  name                       = "twinpipe-dev"
  release_channel            = "REGULAR"
  master_authorized_networks = var.master_authorized_networks
  rbac_security_group        = var.rbac_security_group
  cpu_max_nodes              = 2
  gpu_type                   = var.gpu_type
  gpu_max_nodes              = 1
  labels                     = { env = "dev", app = "twinpipe" }
  image_tag                  = var.image_tag
}

variable "project_id" {
  type = string
}

variable "region" {
  type    = string
  default = "us-central1"
}

variable "gpu_type" {
  type    = string
  default = "nvidia-l4"
}

variable "image_tag" {
  type        = string
  default     = "v1"
  description = "The images' tag in the registry (terraform output tfx_image, torch_image, compile_flags)."
}

variable "rbac_security_group" {
  type = string
}

variable "master_authorized_networks" {
  type = list(object({ cidr = string, name = string }))
}

output "platform" {
  value = module.twinpipe
}

output "compile_flags" {
  value = module.twinpipe.compile_flags
}

# `twinpipe overlay --terraform-output tf.json` reads these (terraform output -json > tf.json).
output "project_id" {
  value = module.twinpipe.project_id
}

output "environment" {
  value = module.twinpipe.environment
}

output "workload_service_account" {
  value = module.twinpipe.workload_service_account
}

output "data_root" {
  value = module.twinpipe.data_root
}

output "pipeline_root" {
  value = module.twinpipe.pipeline_root
}

output "landing_uri" {
  value = module.twinpipe.landing_uri
}

output "vertex_service_account" {
  value = module.twinpipe.vertex_service_account
}

output "registry" {
  value = module.twinpipe.registry
}

output "tfx_image" {
  value = module.twinpipe.tfx_image
}

output "torch_image" {
  value = module.twinpipe.torch_image
}

output "gpu_limit" {
  value = module.twinpipe.gpu_limit
}

output "cluster" {
  value = module.twinpipe.cluster
}

output "region" {
  value = module.twinpipe.region
}

# The cluster's default alert sink: k8s/overlays/<env> puts this topic into Secret twinpipe-alerts
# (key pubsub); compare after apply: terraform output -raw alerts_topic
output "alerts_topic" {
  value = module.twinpipe.alerts_topic
}
