"""Exact-match accuracy on held-out rows: greedy answers compared with the expected ones.

Only formats with a separate answer can be scored: alpaca (`output`) and chat (the last
assistant turn). Text rows have no answer to compare with.
"""

from __future__ import annotations

import torch

from worker.formats import alpaca_prompt


def prompt_and_answer(row: dict, fmt: str, tokenizer) -> tuple[str, str, bool]:
    """(prompt text, expected answer, whether the prompt text already holds the BOS token)."""
    if fmt == "alpaca":
        return alpaca_prompt(row), row["output"], False
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    return prompt, messages[last]["content"], True


@torch.no_grad()
def exact_match(model, tokenizer, rows: list[dict], fmt: str, max_new_tokens: int = 16,
                batch_size: int = 16) -> float | None:
    """Share of rows whose greedy answer equals the expected one (whitespace-trimmed); None if unscorable."""
    if fmt not in ("alpaca", "chat") or not rows:
        return None
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    device = next(model.parameters()).device
    correct = 0
    try:
        for start in range(0, len(rows), batch_size):
            batch = [prompt_and_answer(row, fmt, tokenizer) for row in rows[start:start + batch_size]]
            encoded = tokenizer([p for p, _, _ in batch], return_tensors="pt", padding=True,
                                add_special_tokens=not batch[0][2]).to(device)
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            answers = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += sum(got.strip() == want.strip() for got, (_, want, _) in zip(answers, batch, strict=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return correct / len(rows)
