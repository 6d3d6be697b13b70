output "name" {
  value = google_container_cluster.cluster.name
}

output "endpoint" {
  value     = google_container_cluster.cluster.endpoint
  sensitive = true
}

output "workload_pool" {
  value = "${var.project_id}.svc.id.goog"
}
