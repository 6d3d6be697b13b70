variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  type = string
}

variable "workload_service_account" {
  type = string
}

variable "vertex_service_account" {
  type = string
}

variable "dataflow_service_account" {
  type        = string
  description = "Email of the Dataflow worker SA (TFX Beam stages)."
}

variable "landing_writers" {
  type        = list(string)
  default     = []
  description = "IAM members (user:, group:, serviceAccount:) that deliver data: objectCreator on the landing prefix only."
}

variable "labels" {
  type    = map(string)
  default = {}
}
