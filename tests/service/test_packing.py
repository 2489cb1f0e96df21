"""Packing by predicted memory: the placement model over wide ranges (the scheduler packing real tiny plans is in
test_scheduler.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import Inventory, parse_gpu_name
from service.packing import Claim, devices_of, gpu_fraction, place, replay

GB = 10**9


@settings(max_examples=200, deadline=None)
@given(gpus=st.integers(1, 8), sizes=st.lists(st.tuples(st.integers(1, 140 * GB), st.booleans(), st.integers(1, 3)),
                                              min_size=1, max_size=30))
def test_placements_never_hold_more_than_a_device_has(gpus, sizes):
    inventory = Inventory.single(parse_gpu_name("H200"), gpus)
    loads = replay(devices_of(inventory), [])
    placed = {}
    for number, (held, exclusive, devices) in enumerate(sizes):
        claim = Claim(f"j{number}", "H200", devices if exclusive else 1, held, exclusive)
        chosen = place(loads, claim)
        if chosen is not None:
            placed[claim.job_id] = (claim, chosen)
            assert len(chosen) == claim.devices
    for load in loads:
        assert sum(load.jobs.values()) <= load.device.capacity
        if load.whole:
            assert len(load.jobs) == 1  # an exclusive job is alone on its devices
    # Ray's shares sum to at most one GPU wherever the bytes fit: Ray never over-commits what the model allowed
    for load in loads:
        shares = [gpu_fraction(placed[job][0], load.device) for job in load.jobs]
        assert sum(shares) <= 1.0 + 1e-3 * len(shares)


def test_replaying_the_running_jobs_gives_the_same_loads_as_placing_them():
    devices = devices_of(Inventory.single(parse_gpu_name("H200"), 2))
    claims = [Claim("a", "H200", 1, 100 * GB, False), Claim("b", "H200", 1, 30 * GB, False),
              Claim("c", "H200", 1, 30 * GB, False)]
    loads = replay(devices, [])
    for claim in claims:
        assert place(loads, claim) is not None
    assert sorted(sum(load.jobs.values()) for load in replay(devices, claims)) == \
        sorted(sum(load.jobs.values()) for load in loads)
