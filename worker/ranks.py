"""What the ranks of a multi-process run share (torch.distributed only; Ray and the Trainer's wiring live elsewhere):
FSDP on CPU ranks, objects gathered from every rank, and each rank's own checkpoint files gathered to rank 0."""

from __future__ import annotations

from pathlib import Path


def fsdp_on_cpu(trainer) -> None:
    """accelerate takes the FSDP plugin only on accelerators: on CPU ranks (MULTI_CPU) it drops it and wraps the
    model in DDP, so a plan's FSDP would silently run as DDP. Give the plugin to the state, as accelerate does on a
    GPU; FSDP2's `fully_shard` then shards over the gloo group."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU or trainer.args.fsdp_plugin_args is None:
        return
    plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    if state.mixed_precision != "no":  # as AcceleratorState does for FSDP on a GPU
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    # every AcceleratorState made later starts from PartialState's shared type (accelerate sets it so on a GPU)
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def all_ranks(mine) -> list:
    """Every rank's `mine`, in rank order (every rank must call this); `[mine]` without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [mine]
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def gather_rank_files(checkpoint: str | None, pattern: str = "rng_state_*.pth") -> dict[str, bytes]:
    """Each rank saved its own RNG state (`rng_state_R.pth`: dropout masks, data order) in its own folder, and only
    rank 0's folder goes to Ray: every rank's such files, on rank 0 (an empty dict elsewhere, and in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return {}
    mine = {path.name: path.read_bytes() for path in Path(checkpoint).glob(pattern)} if checkpoint else {}
    everyone = all_ranks(mine)
    return {name: data for files in everyone for name, data in files.items()} if dist.get_rank() == 0 else {}
