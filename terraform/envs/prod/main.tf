# twinpipe prod: state in GCS, everything else in modules/twinpipe.
terraform {
  required_version = ">= 1.5"
  backend "gcs" {
    # bucket is passed at init: terraform init -backend-config="bucket=<PROJECT>-tfstate"
    prefix = "twinpipe/prod"
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
  name                       = "twinpipe-prod"
  release_channel            = "STABLE"
  master_authorized_networks = var.master_authorized_networks
  rbac_security_group        = var.rbac_security_group
  cpu_max_nodes              = 8
  gpu_type                   = var.gpu_type
  gpu_max_nodes              = 4
  labels                     = { env = "prod", app = "twinpipe" }
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

# The cluster's default alert sink: k8s/overlays/<env> puts this topic into Secret twinpipe-alerts
# (key pubsub); compare after apply: terraform output -raw alerts_topic
output "alerts_topic" {
  value = module.twinpipe.alerts_topic
}
