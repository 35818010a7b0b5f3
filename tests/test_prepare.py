import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_folder_corpus, write_raw_textgrid

from speechvq.audio import float_to_int16, load_audio
from speechvq.cli import main
from speechvq.data import prepare
from speechvq.data.corpus import list_corpus
from speechvq.data.prepare import MANIFEST_KEYS, SPLITS, assign_splits, prepare_corpus, split_file
from speechvq.errors import DataError

OUTPUT_FILES = ("manifest.jsonl", "rejected.tsv", "train.int16", "valid.int16", "test.int16", "speakers.txt")


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _corpus(root: Path, speakers=("s1", "s2", "s3"), n=12, corrupt=()) -> Path:
    write_folder_corpus(root, speakers=speakers, utterances=[f"u{i:02d}" for i in range(n)], seconds=0.05)
    for name in corrupt:
        (root / name).write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def _assert_same_output(a: Path, b: Path) -> None:
    for name in OUTPUT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_manifest_keys_offsets_and_audio(tmp_path):
    src = _corpus(tmp_path / "src", n=4)
    write_raw_textgrid(src / "s1" / "u00.TextGrid", {"phones": [(0, 0.05, "a")]}, xmax=0.05)
    summary = prepare_corpus(src, tmp_path / "out", workers=1, progress=False)
    rows = _manifest(tmp_path / "out")
    assert len(rows) == 12 and sum(summary.utterances.values()) == 12 and summary.speakers == 3
    ends = {split: 0 for split in SPLITS}
    for row in rows:
        assert tuple(row) == MANIFEST_KEYS
        assert row["offset"] == ends[row["split"]]  # contiguous, in manifest order
        ends[row["split"]] += row["num_samples"]
        assert Path(row["source"]).is_absolute()
        assert row["text"] == f"text of {row['id'].split('_')[1]}"
        audio = np.fromfile(split_file(tmp_path / "out", row["split"]), dtype="<i2")
        stored = audio[row["offset"]: row["offset"] + row["num_samples"]]
        assert np.array_equal(stored, float_to_int16(load_audio(row["source"])))
    assert {r["id"]: r["alignment"] for r in rows if r["alignment"]} == {"s1_u00": str(src / "s1" / "u00.TextGrid")}
    for split in SPLITS:
        assert split_file(tmp_path / "out", split).stat().st_size == 2 * ends[split]
    assert (tmp_path / "out" / "speakers.txt").read_text().splitlines()[1].startswith("s1\t4\t")


def test_splits_follow_the_key_for_every_speaker_and_are_deterministic(tmp_path):
    sources = list_corpus(_corpus(tmp_path, n=40))
    splits = assign_splits(sources, valid_fraction=0.1, test_fraction=0.1)
    assert splits == assign_splits(list(reversed(sources)), valid_fraction=0.1, test_fraction=0.1)
    by_key: dict[str, set] = {}
    for s in sources:
        by_key.setdefault(s.key, set()).add(splits[s.id])
    assert all(len(v) == 1 for v in by_key.values())  # a sentence never straddles splits
    counts = {split: sum(1 for v in by_key.values() if split in v) for split in SPLITS}
    assert counts == {"train": 32, "valid": 4, "test": 4}
    other = assign_splits(sources, valid_fraction=0.1, test_fraction=0.2)
    assert {k for k, v in by_key.items() if "test" in v} < {s.key for s in sources if other[s.id] == "test"}


def test_tiny_corpus_still_gets_one_key_per_held_out_split(tmp_path):
    sources = list_corpus(_corpus(tmp_path, speakers=("s1",), n=3))
    assert sorted(assign_splits(sources, 0.05, 0.05).values()) == ["test", "train", "valid"]
    with pytest.raises(DataError, match="none for training"):
        assign_splits(sources[:2] + sources[:0], 0.5, 0.4)
    with pytest.raises(DataError, match="valid fraction"):
        assign_splits(sources, 1.5, 0.0)


def test_holdout_speakers_and_test_ids(tmp_path):
    src = _corpus(tmp_path / "src", n=10)
    prepare_corpus(src, tmp_path / "a", workers=1, holdout_speakers=["s2"], progress=False)
    rows = _manifest(tmp_path / "a")
    assert all(r["split"] == "test" for r in rows if r["speaker"] == "s2")
    assert any(r["split"] == "train" for r in rows if r["speaker"] != "s2")

    ids_file = tmp_path / "test_ids.txt"
    ids_file.write_text("# held-out sentences\nu03\nu07\n\ns1_u05\n")
    assert main(["prepare", str(src), str(tmp_path / "b"), "--workers", "1", "--quiet", "--test-ids", str(ids_file),
                 "--valid-fraction", "0.2"]) == 0
    rows = _manifest(tmp_path / "b")
    assert {r["id"] for r in rows if r["split"] == "test"} == {f"{s}_u{n}" for s in ("s1", "s2", "s3")
                                                               for n in ("03", "07")} | {"s1_u05"}
    assert sum(r["split"] == "valid" for r in rows) == 3 * 2  # 2 of the 8 remaining keys, for every speaker

    with pytest.raises(DataError, match="not in the corpus: zz"):
        prepare_corpus(src, tmp_path / "c", holdout_speakers=["zz"], progress=False)
    ids_file.write_text("nothing_like_this\n")
    with pytest.raises(DataError, match="none of the test ids"):
        prepare_corpus(src, tmp_path / "c", test_ids=["nothing_like_this"], progress=False)


def test_corrupt_file_is_rejected_and_the_run_goes_on(tmp_path, capsys):
    src = _corpus(tmp_path / "src", n=3, corrupt=["s2/u01.wav"])
    write_folder_corpus(src, speakers=("s4",), utterances=("short",), seconds=0.001)  # 16 samples: too short
    code = main(["prepare", str(src), str(tmp_path / "out"), "--workers", "2", "--quiet"])
    assert code == 1
    err = capsys.readouterr()
    assert "s2/u01.wav" in err.err and "rejected: 2" in err.out
    rejected = dict(line.split("\t") for line in (tmp_path / "out" / "rejected.tsv").read_text().splitlines())
    assert set(rejected) == {str(src / "s2" / "u01.wav"), str(src / "s4" / "short.wav")}
    assert "corrupt" in rejected[str(src / "s2" / "u01.wav")] and "too short" in rejected[str(src / "s4" / "short.wav")]
    assert {r["id"] for r in _manifest(tmp_path / "out")} == {f"{s}_u0{i}" for s in ("s1", "s2", "s3")
                                                              for i in range(3)} - {"s2_u01"}
    # Running again retries nothing: the rejected files are remembered.
    assert main(["prepare", str(src), str(tmp_path / "out"), "--workers", "2", "--quiet"]) == 0
    assert len((tmp_path / "out" / "rejected.tsv").read_text().splitlines()) == 2


def test_workers_do_not_change_the_output(tmp_path):
    src = _corpus(tmp_path / "src", n=8, corrupt=["s1/u03.wav"])
    prepare_corpus(src, tmp_path / "one", workers=1, progress=False)
    prepare_corpus(src, tmp_path / "two", workers=2, progress=False)
    _assert_same_output(tmp_path / "one", tmp_path / "two")


def test_resume_after_torn_writes_gives_identical_output(tmp_path):
    src = _corpus(tmp_path / "src", n=6, corrupt=["s3/u02.wav"])
    prepare_corpus(src, tmp_path / "ref", workers=1, progress=False)
    out = tmp_path / "out"
    prepare_corpus(src, out, workers=1, progress=False)
    # Simulate a crash: the last manifest and rejected lines are half written and audio was
    # appended that no manifest line accounts for.
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    (out / "manifest.jsonl").write_text("".join(lines[:7]) + lines[7][:20])
    (out / "rejected.tsv").write_text("/some/pa")
    with open(split_file(out, "train"), "ab") as f:
        f.write(b"\x01\x02\x03")
    prepare_corpus(src, out, workers=2, progress=False)
    _assert_same_output(tmp_path / "ref", out)


def test_resume_after_sigkill_gives_identical_manifest_and_audio(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "src", n=20, corrupt=["s1/u04.wav"])
    total = 3 * 20 - 1
    prepare_corpus(src, tmp_path / "ref", workers=1, progress=False)

    # A forked child prepares slowly (so that it can be caught mid-way) and is killed with SIGKILL.
    load = prepare.load_audio
    monkeypatch.setattr(prepare, "load_audio", lambda *a, **k: (time.sleep(0.03), load(*a, **k))[1])
    monkeypatch.setattr(prepare, "COMMIT_INTERVAL_S", 0.05)
    out = tmp_path / "out"
    child = multiprocessing.get_context("fork").Process(
        target=prepare.prepare_corpus, args=(src, out), kwargs={"workers": 1, "progress": False})
    child.start()
    try:
        deadline = time.monotonic() + 60
        manifest = out / "manifest.jsonl"
        while time.monotonic() < deadline and child.is_alive():
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join()
    monkeypatch.undo()
    assert child.exitcode == -signal.SIGKILL
    done = manifest.read_bytes().count(b"\n")
    assert 8 <= done < total  # killed mid-way

    summary = prepare_corpus(src, out, workers=2, progress=False)
    assert summary.new_utterances == total - done
    _assert_same_output(tmp_path / "ref", out)


def test_resume_with_other_options_is_refused(tmp_path):
    src = _corpus(tmp_path / "src", n=4)
    prepare_corpus(src, tmp_path / "out", workers=1, progress=False)
    with pytest.raises(DataError, match="valid_fraction"):
        prepare_corpus(src, tmp_path / "out", workers=1, valid_fraction=0.3, progress=False)
    assert main(["prepare", str(src), str(tmp_path / "out"), "--quiet", "--test-ids", str(tmp_path / "none.txt")]) == 2


def test_cli_summary_and_empty_corpus(tmp_path, capsys):
    src = _corpus(tmp_path / "src", n=4)
    assert main(["prepare", str(src), str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "prepared 12 utterances of 3 speakers" in out
    for split in SPLITS:
        assert split in out
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out2"), "--quiet"]) == 2
    assert "not a corpus" in capsys.readouterr().err


def test_unreadable_alignment_is_listed_and_its_utterance_kept_without_it(tmp_path):
    src = _corpus(tmp_path / "src", speakers=("s1",), n=3)
    (src / "s1" / "u01.phn").write_text("not an alignment at all\n")
    summary = prepare_corpus(src, tmp_path / "out", workers=1, progress=False)
    rows = {r["id"]: r for r in _manifest(tmp_path / "out")}
    assert len(rows) == 3 and rows["s1_u01"]["alignment"] is None
    assert summary.new_rejected == 0  # no audio was rejected
    path, reason = (tmp_path / "out" / "rejected.tsv").read_text().rstrip("\n").split("\t")
    assert path == str(src / "s1" / "u01.phn") and "kept without alignment" in reason
