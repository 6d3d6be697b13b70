# Least-privilege identities: the GKE node SA (logs, metrics, image pulls only), the workload SA
# the pipelines' pods run as through Workload Identity (artifact bucket, alert topic, Vertex),
# the Vertex AI pipeline SA, and the Dataflow worker SA the TFX stack's Beam stages run as.

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

# Dataflow workers of the TFX stack's Beam stages (ExampleGen, StatisticsGen, Transform,
# Evaluator): dataflow.worker only here; bucket access and image pulls are granted on the bucket
# and the repository themselves (modules/platform).
resource "google_service_account" "dataflow" {
  project      = var.project_id
  account_id   = "${var.name}-dataflow"
  display_name = "twinpipe Dataflow workers (TFX Beam stages)"
}

resource "google_project_iam_member" "dataflow_worker" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:${google_service_account.dataflow.email}"
}

locals {
  # The SAs TFX components run as (GKE pods, Vertex jobs): they launch the Dataflow jobs.
  dataflow_launchers = {
    workload = google_service_account.workload.email
    vertex   = google_service_account.vertex.email
  }
}

# What launching and following a job needs, no more: roles/dataflow.developer would also bring
# snapshots, Cloud Build, KMS key handles and storage (the bucket is granted on the bucket).
resource "google_project_iam_custom_role" "dataflow_launcher" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_dataflow_launcher"
  title       = "twinpipe Dataflow job launcher"
  description = "Create, follow and cancel the TFX stack's Dataflow jobs."
  permissions = [
    "dataflow.jobs.create", "dataflow.jobs.get", "dataflow.jobs.list", "dataflow.jobs.cancel",
    "dataflow.messages.list", "dataflow.metrics.get",
    "compute.machineTypes.get", "compute.projects.get", "compute.regions.list", "compute.zones.list",
    "resourcemanager.projects.get",
  ]
}

resource "google_project_iam_member" "dataflow_launch" {
  for_each = local.dataflow_launchers
  project  = var.project_id
  role     = google_project_iam_custom_role.dataflow_launcher.id
  member   = "serviceAccount:${each.value}"
}

# Launching a job that runs as the worker SA needs actAs on that SA alone (not project-wide).
resource "google_service_account_iam_member" "dataflow_act_as" {
  for_each           = local.dataflow_launchers
  service_account_id = google_service_account.dataflow.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${each.value}"
}
