"""Dataset formats: detect one from the rows, and render a row into token ids and loss labels.

The loss is masked (label -100) on prompt tokens wherever a format has a prompt: alpaca's
instruction and input, and every non-assistant turn of a chat. Text rows train on every token.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.errors import DataError

IGNORE_INDEX = -100  # the label torch's cross-entropy skips
ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where the token carries no loss


def detect_format(row: dict, text_field: str) -> str:
    """The format a row is in: chat (`messages`), alpaca (instruction + output) or text (`text_field`)."""
    if "messages" in row:
        return "chat"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if text_field in row:
        return "text"
    # the row's own field names are not echoed: an error message never carries file content
    raise DataError("dataset.format", "auto", f"the first row has {len(row)} field(s), none of the expected "
                    f"ones: 'messages' (chat), 'instruction' + 'output' (alpaca) or '{text_field}' (text; "
                    "set dataset.text_field to the column that holds the text)")


def check_row(row: dict, fmt: str, text_field: str, number: int) -> None:
    """A clear error naming the row when it lacks what its format needs."""
    def fail(what: str):
        raise DataError("dataset", f"row {number}", f"{what} (format {fmt})")

    if fmt == "text" and not isinstance(row.get(text_field), str):
        fail(f"needs a string field '{text_field}'")
    if fmt == "alpaca" and not (isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str)):
        fail("needs string fields 'instruction' and 'output' ('input' is optional)")
    if fmt == "chat":
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            fail("needs 'messages': a list of {role, content}")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES \
                    or not isinstance(message.get("content"), str):
                fail(f"every message needs a role in {CHAT_ROLES} and a string content; got {message!r:.80}")
        if not any(m["role"] == "assistant" for m in messages):
            fail("has no assistant message, so nothing to learn")


def render(row: dict, fmt: str, tokenizer, text_field: str) -> Example:
    if fmt == "text":
        return _text(row[text_field], tokenizer)
    if fmt == "alpaca":
        return _alpaca(row, tokenizer)
    return _chat(row["messages"], tokenizer)


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _eos(tokenizer) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _text(text: str, tokenizer) -> Example:
    ids = _ids(tokenizer, text, special=True) + _eos(tokenizer)
    return Example(ids, list(ids))


def alpaca_prompt(row: dict) -> str:
    template = ALPACA_PROMPT_WITH_INPUT if row.get("input") else ALPACA_PROMPT
    return template.format(instruction=row["instruction"], input=row.get("input", ""))


def _alpaca(row: dict, tokenizer) -> Example:
    prompt = _ids(tokenizer, alpaca_prompt(row), special=True)
    response = _ids(tokenizer, row["output"], special=False) + _eos(tokenizer)
    return Example(prompt + response, [IGNORE_INDEX] * len(prompt) + response)


def _chat_text(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _chat(messages: list[dict], tokenizer) -> Example:
    """Each assistant turn is the text its template adds after the prompt that leads to it."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("dataset.format", "chat", "the model's tokenizer has no chat template; use a model with "
                        "one (an -Instruct model), or convert the data to alpaca or text")
    full = _chat_text(tokenizer, messages, generation_prompt=False)
    spans, cursor = [], 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_chat_text(tokenizer, messages[:index], generation_prompt=True)) if index else 0
        upto = _chat_text(tokenizer, messages[: index + 1], generation_prompt=False)
        if not full.startswith(upto) or start < cursor or start > len(upto):
            raise DataError("dataset.format", "chat", "the tokenizer's chat template does not render a "
                            "conversation prefix by prefix, so the assistant turns cannot be found; "
                            "convert the data to alpaca")
        spans.append((start, len(upto)))
        cursor = len(upto)
    ids, labels, position = [], [], 0
    for start, end in spans:
        prompt = _ids(tokenizer, full[position:start], special=False)
        answer = _ids(tokenizer, full[start:end], special=False)
        ids += prompt + answer
        labels += [IGNORE_INDEX] * len(prompt) + answer
        position = end
    tail = _ids(tokenizer, full[position:], special=False)
    return Example(ids + tail, labels + [IGNORE_INDEX] * len(tail))
