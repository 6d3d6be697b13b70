variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  type = string
}

variable "network" {
  type = string
}

variable "subnetwork" {
  type = string
}

variable "pods_range" {
  type = string
}

variable "services_range" {
  type = string
}

variable "node_service_account" {
  type        = string
  description = "Email of the least-privilege node service account."
}

variable "kms_key" {
  type        = string
  description = "CMEK key for application-layer secrets encryption."
}

variable "release_channel" {
  type    = string
  default = "REGULAR"
}

variable "private_endpoint" {
  type    = bool
  default = false
}

variable "master_cidr" {
  type    = string
  default = "172.16.0.0/28"
}

variable "master_authorized_networks" {
  type        = list(object({ cidr = string, name = string }))
  description = "Who may reach the control plane (e.g. the CI runners' and admins' ranges)."
}

variable "cpu_machine_type" {
  type    = string
  default = "e2-standard-8"
}

variable "cpu_min_nodes" {
  type    = number
  default = 1
}

variable "cpu_max_nodes" {
  type    = number
  default = 4
}

variable "gpu_type" {
  type        = string
  default     = "nvidia-l4"
  description = "GKE accelerator type; must match the pipelines' --gpu (e.g. nvidia-l4, nvidia-tesla-t4)."
}

variable "gpu_count" {
  type    = number
  default = 1
}

variable "gpu_machine_type" {
  type    = string
  default = "g2-standard-8"
}

variable "gpu_max_nodes" {
  type    = number
  default = 2
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "rbac_security_group" {
  type        = string
  description = "Google Groups for RBAC: gke-security-groups@YOUR-DOMAIN."
}
