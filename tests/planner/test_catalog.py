import pytest

from planner.catalog import CATALOG, parse_gpu_name

REQUIRED = ["T4", "V100-16GB", "V100-32GB", "A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200",
            "RTX3090", "RTX4090", "cpu"]


def test_catalog_has_every_required_gpu_with_numbers():
    for name in REQUIRED:
        gpu = CATALOG[name]
        assert gpu.fp32_flops > 0 and gpu.bandwidth > 0
        if name != "cpu":
            assert gpu.memory_bytes >= 16e9 and gpu.fp16_flops > gpu.fp32_flops
            assert gpu.bf16 == (gpu.bf16_flops > 0)
    assert not CATALOG["T4"].bf16 and not CATALOG["V100-32GB"].bf16 and CATALOG["A10G"].bf16


@pytest.mark.parametrize(("reported", "expected"), [
    ("Tesla T4", "T4"), ("Tesla V100-SXM2-16GB", "V100-16GB"), ("Tesla V100-PCIE-32GB", "V100-32GB"),
    ("NVIDIA A10G", "A10G"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
    ("NVIDIA A100 80GB PCIe", "A100-80GB"), ("NVIDIA H100 80GB HBM3", "H100-80GB"), ("NVIDIA H200", "H200"),
    ("NVIDIA GeForce RTX 3090", "RTX3090"), ("NVIDIA GeForce RTX 4090", "RTX4090"),
    ("accelerator_type:A10G", "A10G"), ("A100-80G", "A100-80GB"), ("h100-80gb", "H100-80GB"), ("CPU", "cpu"),
])
def test_parses_ray_and_nvidia_smi_names(reported, expected):
    assert parse_gpu_name(reported).name == expected


def test_ambiguous_size_uses_memory_hint_else_the_smaller_card():
    assert parse_gpu_name("A100").name == "A100-40GB"
    assert parse_gpu_name("A100", memory_bytes=85 * 2**30).name == "A100-80GB"
    assert parse_gpu_name("V100", memory_bytes=34 * 10**9).name == "V100-32GB"


def test_unknown_gpu_names_the_known_ones():
    with pytest.raises(ValueError, match="known: T4"):
        parse_gpu_name("Radeon 7900")
