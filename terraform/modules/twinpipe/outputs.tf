output "cluster" {
  value = module.gke.name
}

output "artifact_bucket" {
  value = module.platform.artifact_bucket
}

output "registry" {
  value = module.platform.registry
}

output "alerts_topic" {
  value = module.platform.alerts_topic
}

output "workload_service_account" {
  value = module.iam.workload_service_account
}

output "vertex_service_account" {
  value = module.iam.vertex_service_account
}
