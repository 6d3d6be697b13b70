# Least-privilege identities: the GKE node SA (logs, metrics, image pulls only), the workload SA
# the pipelines' pods run as through Workload Identity (artifact bucket, alert topic, Vertex),
# and the Vertex AI pipeline SA.

locals {
  node_roles = [
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ]
  workload_roles = ["roles/aiplatform.user"]
}

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-nodes"
  display_name = "twinpipe GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset(local.node_roles)
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_service_account" "workload" {
  project      = var.project_id
  account_id   = "${var.name}-pipelines"
  display_name = "twinpipe pipeline pods (KFP pipeline-runner, TorchX jobs)"
}

resource "google_project_iam_member" "workload" {
  for_each = toset(local.workload_roles)
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.workload.email}"
}

# Kubernetes service accounts allowed to act as the workload SA (Workload Identity).
resource "google_service_account_iam_member" "workload_identity" {
  for_each           = toset(var.kubernetes_service_accounts)
  service_account_id = google_service_account.workload.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${each.value}]"
}

resource "google_service_account" "vertex" {
  project      = var.project_id
  account_id   = "${var.name}-vertex"
  display_name = "twinpipe Vertex AI pipeline jobs"
}

resource "google_project_iam_member" "vertex" {
  for_each = toset(["roles/aiplatform.user", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.vertex.email}"
}
