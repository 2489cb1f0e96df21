"""Dataset loading: formats, masking, packing, splits, and the errors bad data gets before any GPU work."""

from __future__ import annotations

import json

import pytest

from planner.spec import DatasetSpec
from tests.worker.conftest import write_jsonl
from worker.data import build_blocks, pack, pad, split_rows, suggest_seq_len, tokenize_dataset
from worker.errors import DataError
from worker.formats import IGNORE_INDEX, Example
from worker.synthetic import as_alpaca, as_chat


def trained_text(tokenizer, example: Example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels, strict=True)
                             if label != IGNORE_INDEX])


def test_chat_masks_everything_but_the_assistant_turns(tokenizer, tmp_path):
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
                        {"role": "assistant", "content": "5"}, {"role": "user", "content": "And 4 plus 4?"},
                        {"role": "assistant", "content": "8"}]}
    data = tokenize_dataset(DatasetSpec(path=str(write_jsonl(tmp_path / "c.jsonl", [row]))), tokenizer)
    assert data.format == "chat"
    example = data.train[0]
    assert trained_text(tokenizer, example) == "5<|end|>\n8<|end|>\n"
    full = tokenizer.decode(example.input_ids)
    assert full == tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert "Be brief." in full and "And 4 plus 4?" in full  # prompts are inputs, just not trained


def test_alpaca_masks_the_prompt_and_keeps_the_input_field(tokenizer, tmp_path):
    rows = [as_alpaca("Write the word apple in capital letters.", "APPLE"),
            {"instruction": "Add them.", "input": "3 and 4", "output": "7"}]
    data = tokenize_dataset(DatasetSpec(path=str(write_jsonl(tmp_path / "a.jsonl", rows))), tokenizer)
    assert data.format == "alpaca"
    assert [trained_text(tokenizer, e) for e in data.train] == ["APPLE<|end|>", "7<|end|>"]
    assert "### Input:\n3 and 4" in tokenizer.decode(data.train[1].input_ids)


def test_text_trains_on_every_token_from_jsonl_and_txt(tokenizer, tmp_path):
    (tmp_path / "t.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    data = tokenize_dataset(DatasetSpec(path=str(tmp_path / "t.txt")), tokenizer)
    assert data.format == "text" and len(data.train) == 2
    assert all(e.labels == e.input_ids for e in data.train)
    custom = write_jsonl(tmp_path / "c.jsonl", [{"body": "hello there"}])
    assert tokenize_dataset(DatasetSpec(path=str(custom), text_field="body"), tokenizer).format == "text"


def test_parquet_and_folders_load(tokenizer, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [as_chat("What is 1 plus 1?", "2"), as_chat("What is 2 plus 2?", "4")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-0.parquet")
    write_jsonl(tmp_path / "part-1.jsonl", [as_chat("What is 3 plus 3?", "6")])
    data = tokenize_dataset(DatasetSpec(path=str(tmp_path)), tokenizer)
    assert data.format == "chat" and len(data.train) == 3


def test_packing_fills_blocks_and_drops_the_short_tail():
    examples = [Example([1, 2, 3], [IGNORE_INDEX, 2, 3]), Example([4, 5, 6, 7, 8], [4, 5, 6, 7, 8]),
                Example([9, 10], [IGNORE_INDEX, 10])]
    blocks = pack(examples, seq_len=4, pad_id=0)
    # every block full: a padded one would make its step build an attention mask the plan does not count
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert [b["labels"] for b in blocks] == [[IGNORE_INDEX, 2, 3, 4], [5, 6, 7, 8]]
    assert all(b["attention_mask"] == [1, 1, 1, 1] for b in blocks)


def test_packing_keeps_a_short_dataset_as_one_padded_block():
    blocks = pack([Example([1, 2, 3], [IGNORE_INDEX, 2, 3])], seq_len=4, pad_id=0)
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 0]] and blocks[0]["attention_mask"] == [1, 1, 1, 0]


def test_padding_truncates_and_drops_examples_with_no_trained_token_left():
    examples = [Example([1, 2, 3], [IGNORE_INDEX, 2, 3]), Example([4, 5, 6, 7, 8], [IGNORE_INDEX] * 4 + [8])]
    blocks = pad(examples, seq_len=4, pad_id=0)
    assert len(blocks) == 1 and blocks[0]["input_ids"] == [1, 2, 3, 0] and blocks[0]["attention_mask"] == [1, 1, 1, 0]
    with pytest.raises(DataError, match="seq_len"):
        build_blocks(examples[1:], 4, packing=False, pad_id=0, field="seq_len")


def test_eval_split_is_seeded_and_disjoint():
    rows = [{"text": str(i)} for i in range(100)]
    train, held = split_rows(rows, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in held)
    assert split_rows(rows, 0.1, seed=3) == (train, held)


def test_seq_len_suggestion_covers_95_percent_rounded_to_64():
    assert suggest_seq_len([10] * 95 + [1000] * 5, max_positions=4096) == 64
    assert suggest_seq_len([100] * 90 + [1000] * 10, max_positions=4096) == 1024
    assert suggest_seq_len([5000] * 10, max_positions=2048) == 2048


@pytest.mark.parametrize(("content", "field", "fragment"), [
    (None, "dataset.path", "no such file"),
    ("", "dataset.path", "empty"),
    ('{"question": "hi", "answer": "there"}\n', "dataset.format", "none of the expected"),
    ('{"text": "ok"}\nnot json\n', "dataset.path", "line 2 is not valid JSON"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', "dataset", "row 2"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "dataset", "no assistant message"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "dataset", "role"),
    ('[1, 2]', "dataset.path", "not an object"),
])
def test_bad_data_gets_an_error_naming_the_field_and_the_fix(tokenizer, tmp_path, content, field, fragment):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=fragment) as error:
        tokenize_dataset(DatasetSpec(path=str(path)), tokenizer)
    assert error.value.field == field


def test_a_csv_file_is_refused_naming_the_field_and_the_fix(tokenizer, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a \.csv file cannot be read.*convert") as error:
        tokenize_dataset(DatasetSpec(path=str(path)), tokenizer)
    assert (error.value.field, error.value.value) == ("dataset.path", str(path))


def test_chat_data_needs_a_tokenizer_with_a_chat_template(tokenizer, tmp_path):
    plain = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|end|>")
    path = write_jsonl(tmp_path / "c.jsonl", [as_chat("q", "a")])
    with pytest.raises(DataError, match="no chat template"):
        tokenize_dataset(DatasetSpec(path=str(path)), plain)


def test_a_hub_id_that_is_not_cached_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="not a file or folder here"):
        tokenize_dataset(DatasetSpec(path="no-such-org/no-such-dataset-effft"), tokenizer)


def test_max_samples_caps_the_rows(tokenizer, datasets):
    data = tokenize_dataset(DatasetSpec(path=str(datasets["alpaca"]), max_samples=7), tokenizer)
    assert len(data.train) == 7
    assert json.loads(datasets["alpaca"].read_text().splitlines()[0])["instruction"]


def test_size_limits_count_every_file_of_a_folder_before_reading_and_rows_after_max_samples(tmp_path):
    from worker.data import checked_rows
    from worker.rows import SizeLimits

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        write_jsonl(folder / name, [{"text": "x" * 80}] * 5)  # 465 bytes each
    limits = SizeLimits(max_bytes=800, max_rows=6, bytes_setting="MAX_BYTES", rows_setting="MAX_ROWS")
    with pytest.raises(DataError, match=r"^dataset\.path = .*holds 930 bytes \(0\.0 MB\), more than the 800 bytes.*"
                                        r"\(MAX_BYTES\)"):
        checked_rows(DatasetSpec(path=str(folder)), limits)  # each file is under the limit, both are not
    with pytest.raises(DataError, match=r"^dataset\.max_samples = None: the dataset has 5 rows.*set "
                                        r"dataset\.max_samples to 4 or fewer.*MAX_ROWS"):
        checked_rows(DatasetSpec(path=str(folder / "a.jsonl")), SizeLimits(max_rows=4, rows_setting="MAX_ROWS"))
    _, rows = checked_rows(DatasetSpec(path=str(folder / "a.jsonl"), max_samples=4), SizeLimits(max_rows=4))
    assert len(rows) == 4
    assert len(checked_rows(DatasetSpec(path=str(folder)), SizeLimits(max_bytes=2000, max_rows=10))[1]) == 10
