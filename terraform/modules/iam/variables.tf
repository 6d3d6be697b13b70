variable "project_id" {
  type = string
}

variable "name" {
  type = string
}

variable "kubernetes_service_accounts" {
  type        = list(string)
  description = "namespace/name of the KSAs that run pipeline pods."
  default     = ["kubeflow/pipeline-runner", "twinpipe/twinpipe-runner"]
}
