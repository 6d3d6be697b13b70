output "node_service_account" {
  value = google_service_account.nodes.email
}

output "workload_service_account" {
  value = google_service_account.workload.email
}

output "vertex_service_account" {
  value = google_service_account.vertex.email
}

output "dataflow_service_account" {
  value = google_service_account.dataflow.email
}
