# Private GKE cluster: release channel, Workload Identity, shielded nodes, Dataplane V2 network
# policy, private nodes, master authorized networks, secrets encrypted with a CMEK key; a CPU
# pool and an autoscaling GPU pool (tainted, accelerator type from variables) whose nodes run as
# a least-privilege service account.

resource "google_container_cluster" "cluster" {
  #checkov:skip=CKV_GCP_12:NetworkPolicy is enforced by Dataplane V2 (datapath_provider ADVANCED_DATAPATH); the legacy Calico network_policy addon must stay off with it.
  provider = google-beta
  project  = var.project_id
  name     = var.name
  location = var.region

  network         = var.network
  subnetwork      = var.subnetwork
  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range
    services_secondary_range_name = var.services_range
  }

  # Node pools are managed below; the default pool is removed at creation.
  remove_default_node_pool = true
  initial_node_count       = 1
  node_config {
    service_account = var.node_service_account
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  release_channel {
    channel = var.release_channel
  }
  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  datapath_provider           = "ADVANCED_DATAPATH" # Dataplane V2: NetworkPolicy enforcement
  enable_legacy_abac          = false
  authenticator_groups_config {
    security_group = var.rbac_security_group
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.private_endpoint
    master_ipv4_cidr_block  = var.master_cidr
  }
  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr
        display_name = cidr_blocks.value.name
      }
    }
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }
  database_encryption {
    state    = "ENCRYPTED"
    key_name = var.kms_key
  }
  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }
  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }
  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
  }
  resource_labels = var.labels

  addons_config {
    http_load_balancing {
      disabled = false
    }
  }
}

resource "google_container_node_pool" "cpu" {
  project  = var.project_id
  name     = "cpu"
  location = var.region
  cluster  = google_container_cluster.cluster.name

  autoscaling {
    min_node_count = var.cpu_min_nodes
    max_node_count = var.cpu_max_nodes
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = var.cpu_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = var.node_service_account
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(var.labels, { pool = "cpu" })
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

resource "google_container_node_pool" "gpu" {
  project  = var.project_id
  name     = "gpu-${var.gpu_type}"
  location = var.region
  cluster  = google_container_cluster.cluster.name

  autoscaling {
    min_node_count = 0
    max_node_count = var.gpu_max_nodes
  }
  management {
    auto_repair  = true
    auto_upgrade = true
  }
  node_config {
    machine_type    = var.gpu_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = var.node_service_account
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(var.labels, { pool = "gpu" })
    guest_accelerator {
      type  = var.gpu_type
      count = var.gpu_count
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}
