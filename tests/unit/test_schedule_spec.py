import pytest

from components.common.errors import ContractError
from components.common.schedule_spec import GpuSpec, kfp_cron, parse_cron, vertex_cron


def test_five_field_cron_becomes_kfp_six_field_and_vertex_keeps_tz():
    assert kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert kfp_cron("*/15 8-18 * * mon-fri") == "0 */15 8-18 * * mon-fri"
    assert vertex_cron("0 3 * * *") == "0 3 * * *"
    assert vertex_cron("TZ=Europe/Paris 30 2 1 * *") == "TZ=Europe/Paris 30 2 1 * *"
    assert parse_cron("CRON_TZ=UTC 0 0 * * 0") == ("UTC", "0 0 * * 0")


@pytest.mark.parametrize("bad, words", [
    ("0 3 * *", "expected 5 fields"),
    ("0 3 * * * *", "expected 5 fields"),
    ("61 3 * * *", "minute value '61'"),
    ("0 24 * * *", "hour value '24'"),
    ("0 3 0 * *", "day of month value '0'"),
    ("*/0 3 * * *", "step '0'"),
])
def test_bad_cron_is_a_clear_error(bad, words):
    with pytest.raises(ContractError, match=words):
        vertex_cron(bad)


def test_kfp_rejects_a_time_zone_it_cannot_honour():
    with pytest.raises(ContractError, match="cluster's time zone"):
        kfp_cron("TZ=Asia/Tokyo 0 3 * * *")


def test_one_gpu_spec_maps_to_both_targets():
    spec = GpuSpec("nvidia-l4", 2)
    assert spec.kfp() == {
        "accelerator_type": "nvidia.com/gpu", "accelerator_limit": 2,
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "toleration": {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    }
    assert spec.vertex() == {"accelerator_type": "NVIDIA_L4", "accelerator_count": 2}
    assert GpuSpec("nvidia-h100-80gb").vertex()["accelerator_type"] == "NVIDIA_H100_80GB"
    with pytest.raises(ContractError, match="unknown accelerator"):
        GpuSpec("nvidia-rtx-9090")
    with pytest.raises(ContractError, match="at least 1"):
        GpuSpec("nvidia-l4", 0)
