"""The embedded Ray head (issue 9, findings 4 and 5): every socket it listens on is loopback, and each data dir's
head has its own temp dir, so `auto` on this host never finds another installation's cluster."""

from __future__ import annotations

import ipaddress
import time

import psutil

from service.embedded import ray_temp_dir, start_ray_head, stop_ray_head


def listening(pid: int) -> set[tuple[str, int, str]]:
    root = psutil.Process(pid)
    found = set()
    for process in (root, *root.children(recursive=True)):
        try:
            found |= {(c.laddr.ip, c.laddr.port, process.name()) for c in process.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN}
        except psutil.Error:  # a process that ended meanwhile
            continue
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_the_embedded_head_listens_on_loopback_only(tmp_path):
    head = start_ray_head(tmp_path, num_cpus=1)
    try:
        deadline = time.monotonic() + 60
        while "raylet" not in {name for _, _, name in listening(head["pid"])}:
            assert time.monotonic() < deadline, "the raylet never listened"
            time.sleep(0.5)
        time.sleep(2)  # the agents start after the raylet
        sockets = listening(head["pid"])
        assert {"gcs_server", "raylet"} <= {name for _, _, name in sockets}
        exposed = {s for s in sockets if not is_loopback(s[0])}
        assert not exposed, f"listening beyond loopback: {sorted(exposed)}"
        assert head["address"].startswith("127.0.0.1:")
    finally:
        assert stop_ray_head(tmp_path)


def test_each_data_dir_has_its_own_ray_temp_dir(tmp_path):
    first, second = ray_temp_dir(tmp_path / "a"), ray_temp_dir(tmp_path / "b")
    assert first != second and ray_temp_dir(tmp_path / "a") == first
    assert len(str(first)) < 40  # Ray's unix sockets inside it must stay under 107 bytes
