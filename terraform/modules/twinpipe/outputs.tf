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

output "dataflow_service_account" {
  value = module.iam.dataflow_service_account
}

output "dataflow_network" {
  value = module.network.network_name
}

output "dataflow_subnetwork" {
  value = module.network.dataflow_subnetwork
}

output "pipeline_root" {
  value = "gs://${module.platform.artifact_bucket}/pipeline_root"
}

output "landing_uri" {
  value = module.platform.landing_uri
}

output "data_root" {
  value = "gs://${module.platform.artifact_bucket}/data"
}

# What `twinpipe compile` takes, flag by flag (its defaults derive the same names from
# --project and --infra-name):
#   twinpipe compile --stack both --target vertex --image IMAGE $(terraform output -raw compile_flags)
output "compile_flags" {
  value = join(" ", [
    "--project ${var.project_id}",
    "--region ${var.region}",
    "--infra-name ${var.name}",
    "--pipeline-root gs://${module.platform.artifact_bucket}/pipeline_root",
    "--data-root gs://${module.platform.artifact_bucket}/data",
    "--dataflow-service-account ${module.iam.dataflow_service_account}",
    "--dataflow-network ${module.network.network_name}",
    "--dataflow-subnetwork ${module.network.dataflow_subnetwork}",
  ])
}
