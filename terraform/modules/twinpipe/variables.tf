variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  type    = string
  default = "twinpipe"
}

variable "release_channel" {
  type    = string
  default = "REGULAR"
}

variable "master_authorized_networks" {
  type = list(object({ cidr = string, name = string }))
}

variable "cpu_max_nodes" {
  type    = number
  default = 4
}

variable "gpu_type" {
  type    = string
  default = "nvidia-l4"
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

variable "landing_writers" {
  type        = list(string)
  default     = []
  description = "IAM members that deliver data: they may create objects under the landing prefix, nothing else."
}

variable "image_tag" {
  type        = string
  default     = "v1"
  description = "The tag of the twinpipe-tfx and twinpipe-torch images pushed to the registry (tags are immutable there: a new build gets a new tag)."
}
