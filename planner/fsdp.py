"""FSDP's weights and gradients per rank, phase by phase: what FSDP2's `fully_shard` keeps as the HF Trainer
(through accelerate) sets it up.

accelerate shards every decoder layer as a unit of its own (`reshard_after_forward=True`), the input
embedding as another, the final norm with the lm_head as the tail (`reshard_after_forward=False`: gathered
from its forward to its backward; a tied embedding joins the tail, which then stays gathered all step), and
the root last. Each rank keeps 1/N of every parameter, its gradient and its optimizer state. Beyond that,
measured on 2 CPU ranks (bench/fsdp_trace.py lists every live storage at the peak):
- a unit computing holds all its parameters gathered (frozen base and adapters alike), and the next unit's
  all-gather (a flat buffer of its size) is already issued: forward the next layer, backward the previous
  one (the embedding after the first layer);
- a unit's gradients are made whole, copied into a flat reduce-scatter input, and reduced to 1/N; FSDP2
  keeps that input alive until the next unit's reduce-scatter, so one unit's whole gradients outlive it.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.setup import NF4_DOUBLE_QUANT_BYTES, RunSetup


@dataclass(frozen=True)
class Units:
    """Bytes of FSDP's units gathered whole (parameters) and of their whole trainable gradients."""

    layer: int  # one decoder layer, base and adapters
    embed: int  # the input embedding (0 when tied: it is in the tail)
    tail: int  # final norm and lm_head (and the embedding when tied)
    layer_grads: int
    embed_grads: int
    tail_grads: int
    last_linear_grads: int  # the first gradient a layer's backward makes whole (its last Linear's)


def _base_bytes(run: RunSetup) -> float:
    if run.method == "full":
        return run.trainable_bytes
    return run.frozen_bytes


def units(run: RunSetup) -> Units:
    arch = run.arch
    base = _base_bytes(run)
    quantized = NF4_DOUBLE_QUANT_BYTES if run.method == "qlora" else base
    adapter = run.adapter
    layer_adapter = adapter.trainable_params // max(1, arch.layers) if adapter is not None else 0
    layer_linears = sum(linear.params for linear in arch.linears) + arch.expert_params_per_layer
    layer = int(layer_linears * quantized + arch.norm_params_per_layer * base) + layer_adapter * run.trainable_bytes
    embed = int(arch.embedding_params * base)
    tail = int((arch.final_norm_params + arch.lm_head_params) * base)
    if arch.tied_embeddings:
        embed, tail = 0, tail + embed
    grad = run.trainable_bytes
    if run.train_base:
        layer_grads = arch.layer_params * grad
        embed_grads = 0 if arch.tied_embeddings else arch.embedding_params * grad
        tail_grads = (arch.final_norm_params + arch.lm_head_params
                      + (arch.embedding_params if arch.tied_embeddings else 0)) * grad
        last_linear = arch.linears[-1].params * grad
    else:
        layer_grads, embed_grads, tail_grads, last_linear = layer_adapter * grad, 0, 0, 0
    return Units(layer, embed, tail, layer_grads, embed_grads, tail_grads, last_linear)


def _shard(value: int, run: RunSetup) -> int:
    return -(-value // run.gpus)  # FSDP2 pads each parameter's rows to a multiple of N


def gathered_bytes(run: RunSetup) -> dict[str, int]:
    """Parameters gathered whole beyond the rank's shards, at each phase of planner/memory.py."""
    u = units(run)
    tied = run.arch.tied_embeddings
    before_first = u.tail if tied else u.embed  # what the first layer's backward prefetches
    always = u.tail if tied else 0
    one_layer = run.arch.layers == 1
    return {
        "forward_last_layer": always + u.layer + (0 if tied else u.tail),
        "forward_end": u.tail,
        "backward_start": u.tail + u.layer,
        "backward_last_layer": always + u.layer + (before_first - always if one_layer else u.layer),
        "backward_first_layer": always + u.layer + (0 if tied else u.embed),
        "backward_end": u.tail if tied else u.embed,
        "optimizer_step": 0,
    }


def gradient_bytes_at(run: RunSetup, accumulating: bool) -> dict[str, int]:
    """Gradients at each phase: the shards reduced so far (all of them while accumulating), the reduce-scatter
    input the last unit left, and what the unit computing has made whole."""
    u = units(run)
    trainable = run.trainable_params * run.trainable_bytes
    every = _shard(trainable, run)

    def reduced(shards: int) -> int:
        return every if accumulating else shards

    tail_shard = _shard(u.tail_grads, run)
    layers_but_first = _shard(u.layer_grads * max(0, run.arch.layers - 1), run)
    # in a middle layer's backward the previous layer's input is held; the last layer holds the tail's
    held_late = max(u.tail_grads, u.layer_grads if run.arch.layers > 1 else 0)
    return {
        "forward_last_layer": reduced(0),
        "forward_end": reduced(0),
        "backward_start": reduced(0),
        "backward_last_layer": reduced(tail_shard) + held_late + u.last_linear_grads,
        "backward_first_layer": (reduced(tail_shard + layers_but_first)
                                 + (u.layer_grads if run.arch.layers > 1 else u.tail_grads) + u.last_linear_grads),
        # the last reduce-scatter input: the embedding's when it trains, else the first layer's (a tied one's tail)
        "backward_end": every + max(u.embed_grads, u.layer_grads, u.tail_grads if run.arch.tied_embeddings else 0),
        "optimizer_step": every,
    }
