"""Paths two users cannot use against each other or the server (issue 9, findings 2 and 3): outputs in the owner's
own area only, every file read resolved (symlinks inside folders too), the data dir's own files private, hub ids
that cannot be taken for builders or local folders."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.service.api_helpers import problem_fields, submit, submitted
from tests.service.conftest import ADMIN, ALICE, BOB, write_jsonl

ROW = {"text": "hello"}


@pytest.fixture
def data_dir_roots(settings, spec):
    """The embedded default: datasets read from the data dir, outputs written under DATA_DIR/outputs/<user>."""
    settings.dataset_roots, settings.output_roots = [], []
    spec["dataset"] = {"path": "org/data"}
    return settings.data_dir.resolve()


def with_paths(spec: dict, dataset: Path | str | None = None, output: Path | None = None, model=None) -> dict:
    body = {**spec}
    if dataset is not None:
        body["dataset"] = {"path": str(dataset)}
    if output is not None:
        body["output"] = {"dir": str(output)}
    if model is not None:
        body["model"] = str(model)
    return body


# -- outputs ---------------------------------------------------------------------------------------------------------


def test_alice_cannot_write_into_bobs_run_folder_or_area(client, spec, data_dir_roots, settings):
    bob_job = submitted(client, spec, BOB)
    bob_run = data_dir_roots / "runs" / bob_job / "output"
    for target in (bob_run, data_dir_roots / "outputs" / "bob" / "model", data_dir_roots / "runs"):
        assert problem_fields(submit(client, with_paths(spec, output=target))) == {"output.dir"}
    settings.output_roots = [data_dir_roots]  # an operator who opens the whole data dir: run folders stay private
    assert problem_fields(submit(client, with_paths(spec, output=bob_run))) == {"output.dir"}
    assert problem_fields(submit(client, with_paths(spec, output=data_dir_roots / "bob"))) == {"output.dir"}
    assert submit(client, with_paths(spec, output=data_dir_roots / "alice" / "model")).status_code == 201


def test_an_output_folder_that_is_a_symlink_into_another_area_is_refused(client, spec, roots):
    own = roots["outputs"] / "alice"
    own.mkdir()
    (roots["outputs"] / "bob").mkdir()
    (own / "sneaky").symlink_to(roots["outputs"] / "bob")
    response = submit(client, with_paths(spec, output=own / "sneaky" / "model"))
    assert problem_fields(response) == {"output.dir"}
    assert "resolves to" in response.json()["detail"][0]["message"]


# -- reading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ"])
def test_a_symlink_inside_a_dataset_folder_to_an_outside_file_is_refused(client, store, spec, roots, target):
    folder = roots["datasets"] / "folder"
    folder.mkdir()
    write_jsonl(folder / "good.jsonl", [ROW])
    (folder / "more.jsonl").symlink_to(target)
    response = submit(client, with_paths(spec, dataset=folder))
    assert problem_fields(response) == {"dataset.path"}
    message = response.json()["detail"][0]["message"]
    assert "more.jsonl" in message and "root:" not in message  # names the entry, never its content


def test_a_symlink_inside_the_roots_is_fine(client, spec, roots):
    real = write_jsonl(roots["datasets"] / "real.jsonl", [ROW])
    folder = roots["datasets"] / "linked"
    folder.mkdir()
    (folder / "train.jsonl").symlink_to(real)
    assert submit(client, with_paths(spec, dataset=folder)).status_code == 201
    assert submit(client, with_paths(spec, dataset=folder / "train.jsonl")).status_code == 201


def test_a_model_folder_with_a_nested_link_outside_is_refused(client, spec, roots, tmp_path):
    model = roots["datasets"] / "model" / "snapshots" / "abc"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").symlink_to(tmp_path / "outside.json")
    (model.parent / "escape").symlink_to("/")
    response = submit(client, with_paths(spec, model=roots["datasets"] / "model"))
    assert problem_fields(response) == {"model.path"}


def test_the_data_dirs_own_files_and_run_folders_are_not_datasets(client, spec, data_dir_roots, app):
    bob_job = submitted(client, spec, BOB)
    run = data_dir_roots / "runs" / bob_job
    run.mkdir(parents=True)
    (run / "job.json").write_text('{"worker_token": "secret"}')
    (data_dir_roots / "admin-token").write_text("secret")
    for private in (data_dir_roots / "effft.db", data_dir_roots / "admin-token", run / "job.json", run):
        response = submit(client, with_paths(spec, dataset=private))
        assert problem_fields(response) == {"dataset.path"}, private
        assert "secret" not in response.text
    example = data_dir_roots / "example"
    example.mkdir()
    assert submit(client, with_paths(spec, dataset=write_jsonl(example / "train.jsonl", [ROW]))).status_code == 201


def test_a_users_trained_model_is_readable_by_that_user_only(client, spec, roots):
    bobs_model = roots["outputs"] / "bob" / "model"
    bobs_model.mkdir(parents=True)
    (bobs_model / "config.json").write_text("{}")
    assert problem_fields(submit(client, with_paths(spec, model=bobs_model))) == {"model.path"}
    assert submit(client, with_paths(spec, model=bobs_model), BOB).status_code == 201


@pytest.mark.parametrize("name", ["text", "json", "parquet", "../org/name", "org/name/extra", "org/..", "a b/c"])
def test_dataset_names_that_are_not_org_slash_name_are_refused(client, spec, name):
    assert problem_fields(submit(client, with_paths(spec, dataset=name))) == {"dataset.path"}


@pytest.mark.parametrize("name", ["train.csv", "train.CSV", "train.tsv"])
def test_a_dataset_file_the_reader_cannot_read_is_refused_at_submit(client, spec, roots, name):
    path = roots["datasets"] / name
    path.write_text("text\nhello\n")
    response = submit(client, with_paths(spec, dataset=path))
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert (problem["field"], problem["value"]) == ("dataset.path", str(path))
    assert f"a {path.suffix} file cannot be read" in problem["message"] and "convert" in problem["message"]


def test_a_folder_whose_name_has_a_suffix_is_still_a_dataset_folder(client, spec, roots):
    folder = roots["datasets"] / "rows.v2"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [ROW])
    assert submit(client, with_paths(spec, dataset=folder)).status_code == 201


def test_an_operator_may_allow_a_builder_name(client, spec, settings):
    settings.dataset_builders = ["imdb"]
    assert submit(client, with_paths(spec, dataset="imdb")).status_code == 201
    assert problem_fields(submit(client, with_paths(spec, dataset="text"))) == {"dataset.path"}


def test_a_hub_id_that_is_also_a_folder_under_the_working_directory_is_refused(client, spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    for field, body in (("dataset.path", with_paths(spec, dataset="org/name")),
                        ("model.path", with_paths(spec, model="org/name"))):
        assert problem_fields(submit(client, body)) == {field}
    assert submit(client, with_paths(spec, dataset="org/other")).status_code == 201


# -- the data dir's files --------------------------------------------------------------------------------------------


def test_the_sqlite_database_is_readable_by_its_owner_only(app, settings):
    database = settings.database.removeprefix("sqlite:///")
    if settings.database.startswith("postgresql"):
        pytest.skip("Postgres keeps its own files")
    for path in (Path(database), Path(f"{database}-wal")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_user_names_that_are_not_folder_names_are_refused():
    from pydantic import ValidationError

    from service.settings import Settings

    for name in ("../bob", "admin", "a/b", "", ".hidden"):
        with pytest.raises(ValidationError, match="cannot be used"):
            Settings(tokens={"t": name})
    assert Settings(tokens={"t": "alice.smith-2"}).tokens == {"t": "alice.smith-2"}


def test_an_error_about_a_row_never_shows_its_fields(tmp_path):
    from worker.errors import DataError
    from worker.formats import check_row, detect_format

    with pytest.raises(DataError) as caught:
        detect_format({"worker_token": "s3cr3t"}, "text")
    assert "worker_token" not in str(caught.value) and "s3cr3t" not in str(caught.value)
    with pytest.raises(DataError) as caught:
        check_row({"text": 1, "api_key": "s3cr3t"}, "text", "text", 3)
    assert "api_key" not in str(caught.value)


def test_alice_reads_her_own_outputs(client, spec, roots):
    mine = roots["outputs"] / "alice" / "data"
    mine.mkdir(parents=True)
    assert submit(client, with_paths(spec, dataset=write_jsonl(mine / "t.jsonl", [ROW])), ALICE).status_code == 201
    assert os.access(mine, os.R_OK)


# -- found in review ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["dataset", "model", "output"])
def test_a_home_relative_path_is_refused_never_a_500(client, spec, field):
    for path in ("~nosuchuser/x", "~/x"):
        body = with_paths(spec, **{field: path})
        assert problem_fields(submit(client, body)) == {f"{field}.dir" if field == "output" else f"{field}.path"}


def test_a_symlink_loop_is_refused_never_a_500(client, spec, roots):
    (roots["datasets"] / "loop").symlink_to(roots["datasets"] / "loop")
    assert problem_fields(submit(client, with_paths(spec, dataset=roots["datasets"] / "loop"))) == {"dataset.path"}
    (roots["outputs"] / "alice").mkdir()
    (roots["outputs"] / "alice" / "o").symlink_to(roots["outputs"] / "alice" / "o")
    assert problem_fields(submit(client, with_paths(spec, output=roots["outputs"] / "alice" / "o"))) == {"output.dir"}


def test_a_sharded_index_pointing_outside_the_model_folder_is_refused(client, spec, roots):
    model = roots["datasets"] / "sharded"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-1.safetensors", "b": "../../outputs/bob/model/model.safetensors"}}')
    response = submit(client, with_paths(spec, model=model))
    assert problem_fields(response) == {"model.path"} and "bob" in response.json()["detail"][0]["message"]


def test_links_inside_a_linked_folder_of_a_model_are_checked_too(client, spec, roots):
    inner = roots["datasets"] / "inner"
    inner.mkdir()
    (inner / "weights.bin").symlink_to("/etc/passwd")
    model = roots["datasets"] / "model-with-link"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "sub").symlink_to(inner)
    (model / "back").symlink_to(model)  # a loop back up is walked once
    assert problem_fields(submit(client, with_paths(spec, model=model))) == {"model.path"}


def test_a_model_folder_in_the_hf_cache_layout_is_fine(client, spec, roots):
    repo = roots["datasets"] / "models--org--name"
    blob = repo / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_text("{}")
    snapshot = repo / "snapshots" / "123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to("../../blobs/abc")
    assert submit(client, with_paths(spec, model=snapshot)).status_code == 201


@pytest.mark.parametrize("config", ["[]", '"text"', "\xff\xfe", '{"a":' * 5000 + "1" + "}" * 5000])
def test_a_malformed_model_config_is_a_clear_422_in_a_dry_run(client, spec, roots, config):
    model = roots["datasets"] / "bad-model"
    model.mkdir()
    (model / "config.json").write_bytes(config.encode("utf-8", "surrogateescape") if config != "\xff\xfe"
                                        else b"\xff\xfe")
    response = client.post("/v1/plan", content=json.dumps(with_paths(spec, model=model)), headers=ALICE)
    assert problem_fields(response) == {"model.path"}


def test_user_names_differing_only_in_case_are_refused():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="differ only in case"):
        Settings(tokens={"t1": "bob", "t2": "Bob"})
    with pytest.raises(ValidationError, match="cannot be used"):
        Settings(tokens={"t1": "Admin"})


def test_a_ray_temp_dir_someone_else_made_first_is_refused(tmp_path, monkeypatch):
    import tempfile

    from service.embedded import ray_temp_dir

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    folder = ray_temp_dir(tmp_path / "data")
    folder.chmod(0o777)  # what Ray itself does when it starts: ours, so it is taken back
    assert ray_temp_dir(tmp_path / "data") == folder and stat.S_IMODE(folder.stat().st_mode) == 0o700
    if os.getuid() != 0:
        pytest.skip("making a folder owned by another user needs root")
    os.chown(folder, 65534, 65534)  # as if another local user had made it first
    with pytest.raises(RuntimeError, match="not a folder of this user"):
        ray_temp_dir(tmp_path / "data")


def test_the_public_accuracy_histogram_never_shows_a_local_path():
    from service.prom import model_label

    assert model_label("/data/outputs/bob/secret-project/model") == "local:model"
    assert model_label("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"


def test_the_example_job_passes_the_embedded_servers_policy(client, data_dir_roots):
    """`make demo`: init-example writes into the data dir, and the admin submits the job as written."""
    from planner.spec import load_job
    from worker.example import init_example

    job = load_job(init_example(data_dir_roots / "example", rows=40))
    response = client.post("/v1/jobs", content=json.dumps(job.model_dump(mode="json")), headers=ADMIN)
    assert response.status_code == 201, response.text
