output "kms_key" {
  value = google_kms_crypto_key.key.id
}

output "artifact_bucket" {
  value = google_storage_bucket.artifacts.name
}

output "registry" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "alerts_topic" {
  value = google_pubsub_topic.alerts.id
}

output "landing_uri" {
  value = "gs://${google_storage_bucket.artifacts.name}/data/landing"
}
