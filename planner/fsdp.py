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
    last_linear_grads: int  # the gradients a layer's backward has made whole at its peak (its last Linear's)


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
        # a layer's adapters are small: all their gradients count as made whole during its backward
        layer_grads, embed_grads, tail_grads, last_linear = layer_adapter * grad, 0, 0, layer_adapter * grad
    return Units(layer, embed, tail, layer_grads, embed_grads, tail_grads, last_linear)


def _shard(value: int, run: RunSetup) -> int:
    return -(-value // run.gpus)  # FSDP2 pads each parameter's rows to a multiple of N


def backward_layer(run: RunSetup, i: int, accumulating: bool) -> tuple[int, int]:
    """(parameters gathered whole, gradients) in layer `i`'s backward (0: the first layer). Going down the layers
    the gradient shards grow by one layer's 1/N and the activations shrink by one layer's checkpoint, so the
    largest is at an end of the layers in between: planner/memory.py asks for the last, the next to last, the
    second and the first."""
    u, layers = units(run), run.arch.layers
    tied = run.arch.tied_embeddings
    prefetched = u.layer if i > 0 else (0 if tied else u.embed)
    gathered = (u.tail if tied else 0) + u.layer + prefetched
    reduced = _shard(u.tail_grads, run) + _shard(u.layer_grads * (layers - 1 - i), run)
    held = u.tail_grads if i == layers - 1 else u.layer_grads  # the reduce-scatter input the unit above left
    every = _shard(run.trainable_params * run.trainable_bytes, run)
    return gathered, (every if accumulating else reduced) + held + u.last_linear_grads


def gathered_bytes(run: RunSetup) -> dict[str, int]:
    """Parameters gathered whole beyond the rank's shards, in the phases outside the layers' backward."""
    u = units(run)
    tied = run.arch.tied_embeddings
    return {
        "forward_last_layer": (u.tail if tied else 0) + u.layer + (0 if tied else u.tail),
        "forward_end": u.tail,
        "backward_start": u.tail + u.layer,
        "backward_end": u.tail if tied else u.embed,
        "optimizer_step": 0,
    }


def gradient_bytes_at(run: RunSetup, accumulating: bool) -> dict[str, int]:
    """Gradients in the phases outside the layers' backward: none before it (all shards while accumulating);
    at its end all shards and the last reduce-scatter input (the embedding's when it trains)."""
    u = units(run)
    every = _shard(run.trainable_params * run.trainable_bytes, run)
    before = every if accumulating else 0
    return {
        "forward_last_layer": before,
        "forward_end": before,
        "backward_start": before,
        "backward_end": every + max(u.embed_grads, u.layer_grads, u.tail_grads if run.arch.tied_embeddings else 0),
        "optimizer_step": every,
    }
