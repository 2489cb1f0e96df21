"""What is live at the FSDP peak on the CPU: two ranks (gloo, no Ray) train a tiny Llama with the worker's own
`train()`, and the measured step's tracker lists every live storage at the moment of its peak, named.

    python -m bench.fsdp_trace [--method full|lora] [--hidden 64] [--layers 2] [--vocab 512] [--seq 64] [--top 40]

Names: `shard:` a rank's own 1/N of a parameter (FSDP2 keeps it padded to a multiple of N rows),
`unsharded:` a gathered whole parameter, `grad:` a sharded gradient, `opt:` optimizer state; the rest by
MemTracker's kind and the op that made it. Prints the per-rank peak beside the plan's prediction.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path


def _tracer_class():
    from worker.memprobe import FrozenAwareMemTracker

    class TracingTracker(FrozenAwareMemTracker):
        """Remembers the op that made each storage, and the named live storages at each new peak."""

        model = None
        optimizer = None

        def __init__(self):
            super().__init__()
            self._func = "external"
            self.origin: dict[int, str] = {}
            self.at_peak: list[tuple[str, str, int]] = []
            self.peak_total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self._func = str(func)
            return super().__torch_dispatch__(func, types, args, kwargs)

        def _track(self, reftype, t):
            from torch.distributed._tools.common_utils import get_untyped_storages

            new = [st for st in get_untyped_storages(t) if st not in self._WINFO]
            super()._track(reftype, t)
            where = "bw" if self._mod_tracker.is_bw else "fw"
            for st in new:
                self.origin[id(st)] = f"{self._func} ({where})"

        def _update_peak_stats(self, peak_state):
            super()._update_peak_stats(peak_state)
            total = sum(snap.get("Total", 0) for snap in self._curr_mem_snap.values())
            if total > self.peak_total:
                self.peak_total = total
                names = storage_names(TracingTracker.model, TracingTracker.optimizer)
                self.at_peak = [(names.get(id(st), f"{winfo.reftype}"), self.origin.get(id(st), "?"),
                                 winfo.mem_consumed) for st, (winfo, _) in list(self._WINFO.items())
                                if winfo.mem_consumed > 0]

    return TracingTracker


def _local(tensor):
    from torch.distributed.tensor import DTensor

    return tensor._local_tensor if isinstance(tensor, DTensor) else tensor


def storage_names(model, optimizer) -> dict[int, str]:
    from torch.distributed.fsdp import FSDPModule

    names: dict[int, str] = {}
    if model is None:
        return names
    for module in model.modules():
        if not isinstance(module, FSDPModule):
            continue
        group = module._get_fsdp_state()._fsdp_param_group
        for fp in group.fsdp_params if group else ():
            fqn = fp._param_fqn or "?"
            names[id(fp._sharded_param_data.untyped_storage())] = f"shard:{fqn}"
            if hasattr(fp, "_unsharded_param"):
                names[id(fp._unsharded_param.untyped_storage())] = f"unsharded:{fqn}"
            grad = fp.sharded_param.grad
            if grad is not None:
                names[id(_local(grad).untyped_storage())] = f"grad:{fqn}"
            for out in getattr(fp, "all_gather_outputs", None) or ():
                names.setdefault(id(out.untyped_storage()), f"all_gather_output:{fqn}")
    for name, param in model.named_parameters():
        names.setdefault(id(_local(param).untyped_storage()), f"param:{name}")
        if param.grad is not None:
            names.setdefault(id(_local(param.grad).untyped_storage()), f"grad:{name}")
    for state in getattr(optimizer, "state", {}).values():
        for key, value in state.items():
            if hasattr(value, "untyped_storage"):
                names.setdefault(id(_local(value).untyped_storage()), f"opt:{key}")
    return names


def _rank(rank: int, world: int, port: int, args, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    from transformers import TrainerCallback

    import worker.tensor_peak as tensor_peak
    from worker.sinks import ListSink
    from worker.train import WorkerJob, train

    trackers, callbacks = [], []
    if args.top:  # list what is live at the peak: the measured step's tracker, named
        tracer = _tracer_class()
        tensor_peak.FrozenAwareMemTracker = tracer
        original = tracer.__init__

        def remember(self):
            original(self)
            trackers.append(self)

        tracer.__init__ = remember

        class Bind(TrainerCallback):
            def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
                tracer.model, tracer.optimizer = model, optimizer

        callbacks.append(Bind())
    plan = _plan(args, Path(folder))
    summary = train(WorkerJob(plan, f"{folder}/out{rank}", f"{folder}/work{rank}"), ListSink(), callbacks=callbacks)
    Path(folder, f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "measured": summary["memory_peak_bytes"], "predicted": plan.memory.total,
         "phase": plan.memory.phase, "checksum": summary["weights_checksum"]}))
    if rank == 0 and trackers:
        _report(plan, summary, trackers[0], args.top)


def measure(method: str, hidden: int = 64, layers: int = 2, vocab: int = 512, seq: int = 64, world: int = 2,
            tied: bool = False, top: int = 0) -> list[dict]:
    """Train a tiny Llama of this shape on `world` CPU ranks under FSDP; each rank's measured peak and the plan's
    per-rank prediction. `top`: also print the largest storages live at rank 0's peak."""
    import torch.multiprocessing as mp

    args = argparse.Namespace(method=method, hidden=hidden, layers=layers, vocab=vocab, seq=seq, world=world, top=top,
                              tied=tied)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="effft-fsdp-trace-")
    try:
        _plan(args, Path(folder))  # the model and data, once, before the ranks start
        mp.spawn(_rank, args=(world, port, args, folder), nprocs=world)
        return [json.loads(Path(folder, f"rank{rank}.json").read_text()) for rank in range(world)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _plan(args, folder: Path):
    from tests.worker.conftest import make_plan, write_jsonl
    from worker.synthetic import FORMATS, make_pairs
    from worker.tiny import build_tiny_model, train_tokenizer

    if not (folder / "model").exists():
        pairs = make_pairs(400, seed=1)
        tokenizer = train_tokenizer([f"{q} {a}" for q, a in pairs], vocab_size=args.vocab)
        shape = {"hidden_size": args.hidden, "intermediate_size": 3 * args.hidden, "num_hidden_layers": args.layers,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": args.tied}
        build_tiny_model(folder / "model", tokenizer, shape)
        write_jsonl(folder / "chat.jsonl", [FORMATS["chat"](q, a) for q, a in pairs])
    return make_plan(folder / "model", folder / "chat.jsonl", gpus=args.world, method=args.method,
                     sharding="fsdp", gradient_checkpointing=True, seq_len=args.seq,
                     training={"max_steps": 3, "checkpoint_every_steps": 100})


def _report(plan, summary, tracker, top: int) -> None:
    by_kind: dict[str, int] = collections.Counter()
    for name, origin, size in tracker.at_peak:
        kind = name.split(":", 1)[0] if ":" in name else f"{name} via {origin}"
        by_kind[kind] += size
    memory = plan.memory
    print(f"measured {summary['memory_peak_bytes']}, traced peak {tracker.peak_total}, predicted {memory.total} "
          f"({summary['memory_peak_bytes'] / memory.total - 1:+.1%}); plan phase {memory.phase}")
    print("plan terms:", {k: getattr(memory, k) for k in ("weights", "gradients", "optimizer", "activations",
                                                           "logits")})
    for kind, size in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {size:>10}  {kind}")
    print("largest storages:")
    for name, origin, size in sorted(tracker.at_peak, key=lambda x: -x[2])[:top]:
        print(f"  {size:>10}  {name}  [{origin}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--tied", action="store_true", help="tie the lm_head to the embedding")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    for rank in measure(args.method, args.hidden, args.layers, args.vocab, args.seq, args.world, args.tied, args.top):
        print(f"rank {rank['rank']}: measured {rank['measured']}, predicted {rank['predicted']} "
              f"({rank['measured'] / rank['predicted']:.3f}, plan phase {rank['phase']})")


if __name__ == "__main__":
    main()
