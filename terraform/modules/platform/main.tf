# Everything the pipelines use besides the cluster: the APIs, a CMEK key, the artifact bucket
# (pipeline roots, spans, pushed models), the container registry for the two images, the Pub/Sub
# topic data-validation alerts go to, and the workload/Vertex/Dataflow SAs' access to them.

locals {
  apis = [
    "container.googleapis.com", "compute.googleapis.com", "artifactregistry.googleapis.com",
    "aiplatform.googleapis.com", "pubsub.googleapis.com", "cloudkms.googleapis.com",
    "storage.googleapis.com", "iam.googleapis.com", "dataflow.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_kms_key_ring" "ring" {
  project    = var.project_id
  name       = "${var.name}-keys"
  location   = var.region
  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key" "key" {
  name            = "${var.name}-data"
  key_ring        = google_kms_key_ring.ring.id
  rotation_period = "7776000s" # 90 days
  lifecycle {
    prevent_destroy = true
  }
}

# The Google-managed service agents that encrypt with the key.
resource "google_kms_crypto_key_iam_member" "agents" {
  for_each = toset([
    "serviceAccount:service-${data.google_project.this.number}@gs-project-accounts.iam.gserviceaccount.com",
    "serviceAccount:service-${data.google_project.this.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com",
    "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com",
    "serviceAccount:service-${data.google_project.this.number}@container-engine-robot.iam.gserviceaccount.com",
  ])
  crypto_key_id = google_kms_crypto_key.key.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}

resource "google_storage_bucket" "logs" {
  #checkov:skip=CKV_GCP_62:This is the access-log bucket the artifact bucket logs to; logging it into itself would recurse.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = google_kms_crypto_key.key.id
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_storage_bucket" "artifacts" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-artifacts"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = google_kms_crypto_key.key.id
  }
  logging {
    log_bucket = google_storage_bucket.logs.name
  }
  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }
  labels     = var.labels
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  description   = "twinpipe-tfx and twinpipe-torch images"
  kms_key_name  = google_kms_crypto_key.key.id
  docker_config {
    immutable_tags = true
  }
  labels     = var.labels
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_pubsub_topic" "alerts" {
  project      = var.project_id
  name         = "${var.name}-data-validation-alerts"
  kms_key_name = google_kms_crypto_key.key.id
  labels       = var.labels
  depends_on   = [google_kms_crypto_key_iam_member.agents]
}

resource "google_storage_bucket_iam_member" "pipelines" {
  for_each = toset([var.workload_service_account, var.vertex_service_account])
  bucket   = google_storage_bucket.artifacts.name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${each.value}"
}

resource "google_pubsub_topic_iam_member" "alerts" {
  for_each = toset([var.workload_service_account, var.vertex_service_account])
  topic    = google_pubsub_topic.alerts.id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${each.value}"
}

resource "google_artifact_registry_repository_iam_member" "vertex_pull" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${var.vertex_service_account}"
}

# Dataflow workers read the spans and write artifacts, temp and staging files in the bucket, and
# pull the TFX image (their SDK container) from the registry.
resource "google_storage_bucket_iam_member" "dataflow" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${var.dataflow_service_account}"
}

resource "google_artifact_registry_repository_iam_member" "dataflow_pull" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${var.dataflow_service_account}"
}

# The landing prefix: producers upload each delivery under it (gsutil cp, or their own job), and
# every scheduled run's first step takes the new ones (the pipelines' service accounts already
# hold objectAdmin on the bucket above: they read deliveries and write the ledger beside them).
# The marker object makes the prefix exist; its name starts with "." so no run takes it.
resource "google_storage_bucket_object" "landing" {
  bucket  = google_storage_bucket.artifacts.name
  name    = "data/landing/.keep"
  content = "Deliveries (CSV/Parquet files or folders) land here; names starting with . or _ are uploads in progress.\n"
}

# Producers may create objects under the landing prefix and nothing else: no read, no overwrite,
# no delete (a delivery is immutable once landed; a correction is a new object).
resource "google_storage_bucket_iam_member" "landing_writers" {
  for_each = toset(var.landing_writers)
  bucket   = google_storage_bucket.artifacts.name
  role     = "roles/storage.objectCreator"
  member   = each.value
  condition {
    title      = "landing-prefix-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.artifacts.name}/objects/data/landing/\")"
  }
}
