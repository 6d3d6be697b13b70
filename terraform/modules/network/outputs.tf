output "network" {
  value = google_compute_network.vpc.id
}

output "subnetwork" {
  value = google_compute_subnetwork.nodes.id
}

output "pods_range" {
  value = "pods"
}

output "services_range" {
  value = "services"
}
