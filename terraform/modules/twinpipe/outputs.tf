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

output "project_id" {
  value = var.project_id
}

output "region" {
  value = var.region
}

output "name" {
  value = var.name
}

# The environment label of the k8s overlay (twinpipe/env); the name when labels has no env.
output "environment" {
  value = lookup(var.labels, "env", var.name)
}

output "tfx_image" {
  value = "${module.platform.registry}/twinpipe-tfx:${var.image_tag}"
}

output "torch_image" {
  value = "${module.platform.registry}/twinpipe-torch:${var.image_tag}"
}

# The GPUs the cluster can scale to: the overlay's ResourceQuota and Volcano queue cap.
output "gpu_limit" {
  value = var.gpu_max_nodes * var.gpu_count
}

# What `twinpipe compile` takes, flag by flag (its defaults derive the same names from
# --project and --infra-name):
#   twinpipe compile --stack both --target vertex $(terraform output -raw compile_flags)
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
    "--tfx-image ${module.platform.registry}/twinpipe-tfx:${var.image_tag}",
    "--torch-image ${module.platform.registry}/twinpipe-torch:${var.image_tag}",
  ])
}
