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

output "network_name" {
  value = google_compute_network.vpc.name
}

# As Dataflow's --subnetwork takes it.
output "dataflow_subnetwork" {
  value = "regions/${var.region}/subnetworks/${google_compute_subnetwork.nodes.name}"
}
