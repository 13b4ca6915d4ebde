"""SFT rows from local JSONL/JSON/parquet through `datasets`: same rows either way, named errors, no hub."""

from __future__ import annotations

import json
import re

import pyarrow as pa  # noqa: E402  (a dependency of `datasets`, which the project requires)
import pyarrow.parquet as pq  # noqa: E402
import pytest

from services.tasks.sft_data import load_sft_rows  # noqa: E402

RECORDS = [
    {"prompt_id": "a-1", "prompt": "User: 1+2?", "completion": "<answer>3</answer>", "answer": "3", "x": 1},
    {"prompt_id": "a-2", "prompt": "User: 2+2?", "completion": "<answer>4</answer>", "answer": "4", "x": 2},
    {"prompt_id": "a-3", "prompt": "User: hi", "completion": "Hello! 三", "answer": "", "x": 3},
]
EXPECTED = [{k: r[k] for k in ("prompt_id", "prompt", "completion", "answer")} for r in RECORDS]


def write_jsonl(path, records, blank_lines=False):
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_jsonl_json_and_parquet_give_the_same_rows(tmp_path):
    jsonl = load_sft_rows(write_jsonl(tmp_path / "d.jsonl", RECORDS, blank_lines=True))
    array = tmp_path / "d.json"
    array.write_text(json.dumps(RECORDS), encoding="utf-8")  # a JSON array of records also reads
    parquet = load_sft_rows(write_parquet(tmp_path / "d.parquet", RECORDS))
    assert jsonl == parquet == load_sft_rows(array) == EXPECTED  # extra column "x" ignored


def test_prompt_id_falls_back_to_stem_and_index_and_answer_to_empty(tmp_path):
    records = [{"q": "User: 1+2?", "a": "3"}, {"q": "User: 2+2?", "a": "4"}]
    for path in (
        write_jsonl(tmp_path / "math.jsonl", records),
        write_parquet(tmp_path / "math.parquet", records),
    ):
        assert load_sft_rows(path, prompt_field="q", completion_field="a") == [
            {"prompt_id": "math-0", "prompt": "User: 1+2?", "completion": "3", "answer": ""},
            {"prompt_id": "math-1", "prompt": "User: 2+2?", "completion": "4", "answer": ""},
        ]
    # A row lacking prompt_id/answer in a file where others have them: null cells count as absent.
    mixed = [RECORDS[0], {"prompt": "User: x", "completion": "y"}]
    assert load_sft_rows(write_jsonl(tmp_path / "mixed.jsonl", mixed))[1] == {
        "prompt_id": "mixed-1", "prompt": "User: x", "completion": "y", "answer": ""
    }  # fmt: skip


def test_limit_keeps_the_first_rows_in_file_order(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", RECORDS)
    assert load_sft_rows(path, limit=2) == EXPECTED[:2]
    assert load_sft_rows(path, limit=10) == EXPECTED
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_sft_rows(path, limit=0)


def test_cache_dir_is_used_and_the_default_cache_is_not(tmp_path, monkeypatch):
    import datasets

    default = tmp_path / "hf-default-cache"  # where `datasets` writes when no cache_dir is passed
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", default)
    path = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    assert load_sft_rows(path) == EXPECTED  # default: a temp dir, removed afterwards
    cache = tmp_path / "cache"
    assert load_sft_rows(path, cache_dir=cache) == EXPECTED
    assert any(p.suffix == ".arrow" for p in cache.rglob("*"))
    assert not default.exists()


def test_missing_column_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r"}])
    with pytest.raises(ValueError, match=re.escape("d.jsonl: row 0: missing field 'completion'")) as e:
        load_sft_rows(path)
    assert "'response'" in str(e.value)  # the columns it does have, to pick from


def test_null_cell_names_its_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [RECORDS[0], {"prompt_id": "b", "prompt": "p"}])
    with pytest.raises(ValueError, match=re.escape("d.jsonl: row 1: missing field 'completion'")):
        load_sft_rows(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": 4}, "field 'answer' must be a string, got int"),
        ({"prompt_id": 7}, "field 'prompt_id' must be a string, got int"),
        ({"completion": ["a"]}, "field 'completion' must be a string, got list"),
        ({"completion": "  \n"}, "field 'completion' is empty"),
        ({"prompt": ""}, "field 'prompt' is empty"),
        ({"prompt_id": ""}, "field 'prompt_id' must not be empty"),
    ],
)
def test_bad_values_name_file_row_and_field(tmp_path, change, message):
    bad = {**RECORDS[1], **change}
    with pytest.raises(ValueError, match=re.escape(f"d.jsonl: row 1: {message}")):
        load_sft_rows(write_jsonl(tmp_path / "d.jsonl", [RECORDS[0], bad]))
    # A parquet column has one type, so a file with a mixed column cannot be written: the bad row alone.
    with pytest.raises(ValueError, match=re.escape(f"d.parquet: row 0: {message}")):
        load_sft_rows(write_parquet(tmp_path / "d.parquet", [bad]))


def test_a_column_mixing_strings_and_numbers_is_refused_not_misread(tmp_path):
    # `datasets` would store this column as JSON text and hand row 0's string "007" back as the int 7.
    records = [{**RECORDS[0], "answer": "007"}, {**RECORDS[1], "answer": 4}]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(
        ValueError, match=re.escape("d.jsonl: row 1: field 'answer' must be a string, got int")
    ):
        load_sft_rows(path)
    array = tmp_path / "d.json"
    array.write_text(json.dumps(records[::-1]))
    with pytest.raises(
        ValueError, match=re.escape("d.json: row 0: field 'answer' must be a string, got int")
    ):
        load_sft_rows(array)


def test_custom_field_names_appear_in_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "p", "a": "x"}, {"q": "p", "a": 3}])
    with pytest.raises(ValueError, match=re.escape("d.jsonl: row 1: field 'a' must be a string, got int")):
        load_sft_rows(path, prompt_field="q", completion_field="a")


def test_missing_file_is_file_not_found_naming_the_path(tmp_path):
    missing = tmp_path / "nope" / "train.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: no such file")):
        load_sft_rows(missing)
    with pytest.raises(FileNotFoundError, match="a directory"):
        load_sft_rows(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_sft_rows("some-org/some-dataset.jsonl")  # a hub-looking name is still only a local path


def test_glob_characters_in_the_name_read_exactly_that_file(tmp_path):
    # `datasets` treats data_files as glob patterns: unescaped, "d[1].jsonl" would match "d1.jsonl".
    write_jsonl(tmp_path / "d1.jsonl", [{"prompt": "WRONG FILE", "completion": "c"}])
    path = write_jsonl(tmp_path / "d[1].jsonl", RECORDS)
    assert load_sft_rows(path) == EXPECTED


def test_unknown_extension_names_the_supported_ones(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion\np,c\n")
    with pytest.raises(ValueError, match=re.escape("supported: ['.json', '.jsonl', '.parquet']")):
        load_sft_rows(path)


def test_unreadable_content_and_empty_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: not readable as json"):
        load_sft_rows(bad)
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(ValueError, match=r"fake\.parquet: not readable as parquet"):
        load_sft_rows(fake)
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=re.escape(f"{name}: ") + ".*no rows"):
            load_sft_rows(tmp_path / name)
