"""Conversion planning and the conversions.jsonl contract (the model-free parts)."""

from pathlib import Path

import pytest

from speechvq.errors import SpeechVQError
from speechvq.fileio import read_jsonl
from speechvq.inference.convert import Job, _merge_conversions, collect_inputs, plan_jobs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_collect_inputs_from_files_directories_and_list_files(tmp_path):
    a = _touch(tmp_path / "SF1" / "100001.wav")
    b = _touch(tmp_path / "SF1" / "100002.flac")
    c = _touch(tmp_path / "TM1" / "sub" / "100003.ogg")
    _touch(tmp_path / "TM1" / "notes.txt")
    listing = tmp_path / "list.txt"
    listing.write_text("# sources\nSF1/100001.wav\n\n" + str(c) + "\n")
    assert collect_inputs([a]) == [a]
    assert collect_inputs([tmp_path / "SF1"]) == [a, b]
    assert collect_inputs([tmp_path / "TM1"]) == [c]
    assert collect_inputs([listing]) == [a, c]
    with pytest.raises(SpeechVQError, match="no .wav/.flac/.ogg"):
        collect_inputs([_touch(tmp_path / "empty" / "x.txt").parent])
    # another extension (decompress: .svq) under the same rules
    svq = _touch(tmp_path / "svq" / "SF1_100001.svq")
    (tmp_path / "svq" / "files.lst").write_text("SF1_100001.svq\n")
    assert collect_inputs([tmp_path / "svq"], (".svq",)) == [svq]
    assert collect_inputs([tmp_path / "svq" / "files.lst"], (".svq",)) == [svq]
    with pytest.raises(SpeechVQError, match="no .svq files"):
        collect_inputs([tmp_path / "SF1"], (".svq",))


def test_jobs_take_speaker_from_folder_and_name_outputs_by_contract(tmp_path):
    src = _touch(tmp_path / "SF1" / "100050.wav")
    jobs = plan_jobs([src], ["TM1", "TF1"])
    assert [j.output_name for j in jobs] == ["SF1_100050_to_TM1.wav", "SF1_100050_to_TF1.wav"]
    assert plan_jobs([src], None)[0].output_name == "SF1_100050_to_SF1.wav"
    assert plan_jobs([src], ["TM1"], source_speaker="me")[0] == Job(src, "me", "TM1")


def test_jobs_given_twice_run_once_and_colliding_outputs_are_refused(tmp_path):
    src = _touch(tmp_path / "SF1" / "100050.wav")
    assert plan_jobs([src, src], ["TM1", "TM1"]) == [Job(src, "SF1", "TM1")]
    same_name = _touch(tmp_path / "other" / "SF1" / "100050.wav")
    with pytest.raises(SpeechVQError, match="SF1_100050_to_TM1.wav"):
        plan_jobs([src, same_name], ["TM1"])
    elsewhere = _touch(tmp_path / "b" / "100050.wav")
    with pytest.raises(SpeechVQError, match="me_100050_to_TM1.wav"):
        plan_jobs([src, elsewhere], ["TM1"], source_speaker="me")


def test_conversions_jsonl_merges_reruns_without_duplicates(tmp_path):
    path = tmp_path / "conversions.jsonl"
    first = [{"output": "a.wav", "target_speaker": "x"}, {"output": "b.wav", "target_speaker": "x"}]
    _merge_conversions(path, first)
    _merge_conversions(path, [{"output": "b.wav", "target_speaker": "y"}])
    rows = read_jsonl(path)
    assert sorted(r["output"] for r in rows) == ["a.wav", "b.wav"]
    assert {r["output"]: r["target_speaker"] for r in rows}["b.wav"] == "y"


def test_malformed_conversions_jsonl_is_a_one_line_error(tmp_path):
    path = tmp_path / "conversions.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(SpeechVQError, match="conversions.jsonl: malformed"):
        _merge_conversions(path, [{"output": "a.wav"}])
    assert path.read_text() == "{not json\n"
