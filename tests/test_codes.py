import numpy as np
import pytest

from speechvq.data.codes import CodesCorpus, load_codes, save_codes, write_corpus_codes
from speechvq.errors import DataError


def _items(rng):
    rows = []
    for i in range(7):
        split = ["train", "valid", "test"][i % 3]
        rows.append(({"id": f"s{i % 2}_{i:03d}", "speaker": f"s{i % 2}", "split": split},
                     rng.integers(0, 512, size=int(rng.integers(1, 40)))))
    return rows


def test_corpus_codes_round_trip(tmp_path):
    rows = _items(np.random.default_rng(0))
    corpus = write_corpus_codes(tmp_path / "codes", iter(rows), {"num_codes": 512, "speakers": ["s0", "s1"]})
    assert [e.id for e in corpus.entries()] == [info["id"] for info, _ in rows]
    for (info, codes), entry in zip(rows, corpus.entries()):
        assert entry.split == info["split"] and entry.speaker == info["speaker"]
        np.testing.assert_array_equal(corpus.codes(entry), codes)
    reopened = CodesCorpus(tmp_path / "codes")
    assert reopened.speakers == ["s0", "s1"] and reopened.num_codes == 512
    assert {e.split for e in reopened.entries("test")} == {"test"}


def test_interrupted_write_keeps_previous_codes(tmp_path):
    rows = _items(np.random.default_rng(1))
    write_corpus_codes(tmp_path / "codes", iter(rows), {"num_codes": 512})

    def broken():
        yield rows[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_corpus_codes(tmp_path / "codes", broken(), {"num_codes": 512})
    assert len(CodesCorpus(tmp_path / "codes").entries()) == len(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes"]  # no temporary directory left behind


def test_missing_codes_directory_is_refused(tmp_path):
    with pytest.raises(DataError, match="not a codes directory"):
        CodesCorpus(tmp_path)


def test_malformed_meta_json_is_a_data_error(tmp_path):
    write_corpus_codes(tmp_path / "codes", iter(_items(np.random.default_rng(2))), {"num_codes": 512})
    (tmp_path / "codes" / "meta.json").write_text("{oops")
    with pytest.raises(DataError, match="meta.json: malformed JSON"):
        CodesCorpus(tmp_path / "codes")


def test_npy_codes_round_trip_and_range_check(tmp_path):
    codes = np.array([0, 5, 511], dtype=np.int64)
    path = save_codes(tmp_path / "a.npy", codes)
    np.testing.assert_array_equal(load_codes(path, 512), codes)
    with pytest.raises(DataError, match=r"out of range \[0, 256\)"):
        load_codes(path, 256)
    (tmp_path / "bad.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match="bad.npy"):
        load_codes(tmp_path / "bad.npy", 512)


def test_codes_directory_is_flushed_before_and_after_its_rename(tmp_path, monkeypatch):
    """Every file and the temporary directory are fsynced before the rename, the parent after it."""
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def record(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(a), str(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", record)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "codes"
    write_corpus_codes(out, iter(_items(np.random.default_rng(3))), {"num_codes": 512})
    renames = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(out)]
    assert len(renames) == 1
    before, after = events[: renames[0]], events[renames[0] + 1:]
    files = {os.stat(p).st_ino for p in out.iterdir()}
    assert {p.name for p in out.iterdir()} >= {"manifest.jsonl", "meta.json", "train.int16"}
    assert files <= {ino for _, ino, is_dir in (e for e in before if e[0] == "fsync") if not is_dir}
    assert ("fsync", os.stat(out).st_ino, True) in before  # its entries, before the rename
    assert after == [("fsync", os.stat(tmp_path).st_ino, True)]  # the rename, after it
