import pytest
from conftest import make_wav, write_folder_corpus, write_raw_textgrid, write_vctk_corpus

from speechvq.data.corpus import detect_layout, list_corpus, read_speaker_info
from speechvq.errors import DataError


def test_folder_layout_ids_keys_speakers_and_text(tmp_path):
    paths = write_folder_corpus(tmp_path, speakers=("bob", "alice"), utterances=("u2", "u1"))
    utts = list_corpus(tmp_path)
    assert detect_layout(tmp_path) == "folders"
    assert [u.id for u in utts] == ["alice_u1", "alice_u2", "bob_u1", "bob_u2"]  # sorted by id
    assert {u.path for u in utts} == set(paths)
    for u in utts:
        assert u.path.parent.name == u.speaker
        assert u.key == u.path.stem
        assert u.text == f"text of {u.key}"
        assert u.alignment is None


def test_folder_layout_reads_flac_and_ogg_and_skips_other_files(tmp_path):
    make_wav(tmp_path / "s1" / "a.flac")
    make_wav(tmp_path / "s1" / "b.ogg")
    (tmp_path / "s1" / "notes.md").write_text("x")
    (tmp_path / "s1" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "empty_folder").mkdir()
    assert [(u.id, u.text) for u in list_corpus(tmp_path, layout="folders")] == [("s1_a", None), ("s1_b", None)]


def test_folder_layout_refuses_two_files_for_one_utterance(tmp_path):
    make_wav(tmp_path / "s1" / "a.wav")
    make_wav(tmp_path / "s1" / "a.flac")
    with pytest.raises(DataError, match="a.flac"):
        list_corpus(tmp_path)


@pytest.mark.parametrize("mic", ["mic1", "mic2"])
def test_vctk092_microphone_selection_text_and_keys(tmp_path, mic):
    write_vctk_corpus(tmp_path, version="0.92", speakers=("p226", "p225"), sentences=("002", "001"))
    (tmp_path / "wav48_silence_trimmed" / "p225" / "log.txt").write_text("stray file")
    assert detect_layout(tmp_path) == "vctk092"
    utts = list_corpus(tmp_path, mic=mic)
    assert [u.id for u in utts] == ["p225_001", "p225_002", "p226_001", "p226_002"]
    for u in utts:
        assert u.path.name == f"{u.id}_{mic}.flac"
        assert u.key == u.id.split("_")[1]
        assert u.speaker == u.id.split("_")[0]
        assert u.text == f"Sentence {u.key} of {u.speaker}."  # whitespace and newlines collapsed


def test_vctk092_utterance_missing_for_the_chosen_mic_is_skipped(tmp_path):
    write_vctk_corpus(tmp_path, speakers=("p225",), sentences=("001", "002"))
    (tmp_path / "wav48_silence_trimmed" / "p225" / "p225_002_mic2.flac").unlink()
    assert [u.id for u in list_corpus(tmp_path, mic="mic2")] == ["p225_001"]
    assert [u.id for u in list_corpus(tmp_path, mic="mic1")] == ["p225_001", "p225_002"]


def test_vctk080_layout(tmp_path):
    write_vctk_corpus(tmp_path, version="0.80", speakers=("p225", "p226"), sentences=("001",), text=False)
    assert detect_layout(tmp_path) == "vctk080"
    utts = list_corpus(tmp_path, layout="vctk")
    assert [(u.id, u.key, u.speaker, u.path.suffix, u.text) for u in utts] == [
        ("p225_001", "001", "p225", ".wav", None), ("p226_001", "001", "p226", ".wav", None)]


@pytest.mark.parametrize("version", ["0.92", "0.80"])
def test_speaker_info(tmp_path, version):
    write_vctk_corpus(tmp_path, version=version, speakers=("p225", "p226"), sentences=("001",))
    info = read_speaker_info(tmp_path)
    assert sorted(info) == ["p225", "p226"]
    assert info["p225"] == {"age": "23", "gender": "F", "accent": "English", "region": "Southern England"}
    assert read_speaker_info(tmp_path / "wav48_silence_trimmed") == {}


def test_layout_detection_errors(tmp_path):
    with pytest.raises(DataError, match="no such corpus"):
        detect_layout(tmp_path / "missing")
    (tmp_path / "just_text").mkdir()
    (tmp_path / "just_text" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="not a corpus"):
        detect_layout(tmp_path)
    write_folder_corpus(tmp_path, speakers=("s1",), utterances=("a",))
    with pytest.raises(DataError, match="--layout vctk"):
        list_corpus(tmp_path, layout="vctk")
    with pytest.raises(DataError, match="mic3"):
        list_corpus(tmp_path, mic="mic3")
    with pytest.raises(DataError, match="unknown layout"):
        list_corpus(tmp_path, layout="timit")


def test_alignment_beside_the_audio_with_the_same_stem(tmp_path):
    write_folder_corpus(tmp_path, speakers=("s1",), utterances=("a", "b", "c", "d"))
    write_raw_textgrid(tmp_path / "s1" / "a.TextGrid", {"phones": [(0, 0.1, "x")]}, xmax=0.1)
    (tmp_path / "s1" / "b.phn").write_text("0 1600 x\n")
    (tmp_path / "s1" / "c.lab").write_text("0 1000000 x\n")
    (tmp_path / "s1" / "d.lab").write_text("a plain transcript\n")  # not an alignment
    found = {u.key: u.alignment for u in list_corpus(tmp_path)}
    assert found == {"a": tmp_path / "s1" / "a.TextGrid", "b": tmp_path / "s1" / "b.phn",
                     "c": tmp_path / "s1" / "c.lab", "d": None}


def test_alignments_dir_with_the_same_relative_paths_wins(tmp_path):
    corpus, aligned = tmp_path / "corpus", tmp_path / "aligned"
    write_folder_corpus(corpus, speakers=("s1", "s2"), utterances=("a", "b"))
    write_raw_textgrid(corpus / "s1" / "a.TextGrid", {"phones": [(0, 0.1, "beside")]}, xmax=0.1)
    write_raw_textgrid(aligned / "s1" / "a.TextGrid", {"phones": [(0, 0.1, "tree")]}, xmax=0.1)
    write_raw_textgrid(aligned / "s2" / "b.TextGrid", {"phones": [(0, 0.1, "tree")]}, xmax=0.1)
    found = {u.id: u.alignment for u in list_corpus(corpus, alignments_dir=aligned)}
    assert found == {"s1_a": aligned / "s1" / "a.TextGrid", "s1_b": None, "s2_a": None,
                     "s2_b": aligned / "s2" / "b.TextGrid"}
    with pytest.raises(DataError, match="no such alignments directory"):
        list_corpus(corpus, alignments_dir=tmp_path / "nope")


def test_vctk_alignments_named_by_utterance_id(tmp_path):
    corpus, aligned = tmp_path / "vctk", tmp_path / "mfa"
    write_vctk_corpus(corpus, speakers=("p225",), sentences=("001", "002"))
    # Montreal Forced Aligner output: <speaker>/<id>.TextGrid, without the mic suffix.
    write_raw_textgrid(aligned / "p225" / "p225_001.TextGrid", {"phones": [(0, 0.05, "x")]}, xmax=0.05)
    found = {u.id: u.alignment for u in list_corpus(corpus, alignments_dir=aligned)}
    assert found == {"p225_001": aligned / "p225" / "p225_001.TextGrid", "p225_002": None}
