import numpy as np
import pytest
from conftest import write_raw_textgrid

from speechvq.data.alignments import Phone, frame_labels, is_time_aligned_label_file, read_alignment, write_textgrid
from speechvq.errors import DataError

PHONES = [Phone("sil", 0.0, 0.2), Phone("ae", 0.2, 0.35), Phone("t", 0.35, 0.5)]


def _close(a: list[Phone], b: list[Phone]) -> bool:
    return len(a) == len(b) and all(
        x.phone == y.phone and abs(x.start_s - y.start_s) < 1e-9 and abs(x.end_s - y.end_s) < 1e-9 for x, y in zip(a, b)
    )


def test_timit_phn_sample_indices_at_16khz(tmp_path):
    path = tmp_path / "sa1.phn"
    path.write_text("0 3200 h#\n3200 5600 ae\n\n5600 8000 t\n", encoding="utf-8")
    assert _close(read_alignment(path), [Phone("h#", 0.0, 0.2), Phone("ae", 0.2, 0.35), Phone("t", 0.35, 0.5)])


def test_htk_lab_100ns_units_with_extra_columns(tmp_path):
    path = tmp_path / "x.lab"
    path.write_text("0 2000000 sil -12.5\n2000000 3500000 ae -3.1\n3500000 5000000 t\n///\n0 5000000 cat\n")
    assert _close(read_alignment(path), PHONES)  # only the first level of a multi-level file


def test_textgrid_picks_the_phones_tier_among_several(tmp_path):
    path = write_raw_textgrid(tmp_path / "x.TextGrid", {
        "words": [(0.0, 0.2, ""), (0.2, 0.5, "at")],
        "phones": [(0.0, 0.2, "sil"), (0.2, 0.35, "ae"), (0.35, 0.5, "t")],
    }, xmax=0.5)
    assert _close(read_alignment(path), PHONES)


def test_textgrid_mfa_speaker_tier_name(tmp_path):
    path = write_raw_textgrid(tmp_path / "x.TextGrid", {
        "p225 - words": [(0.0, 0.5, "at")],
        "p225 - phones": [(0.0, 0.2, "sil"), (0.2, 0.35, "ae"), (0.35, 0.5, "t")],
    }, xmax=0.5)
    assert _close(read_alignment(path), PHONES)


def test_textgrid_only_interval_tier_is_used_whatever_its_name(tmp_path):
    path = write_raw_textgrid(tmp_path / "x.textgrid", {"segments": [(0.0, 0.2, "sil"), (0.2, 0.35, "ae"),
                                                                     (0.35, 0.5, "t")]}, xmax=0.5)
    assert _close(read_alignment(path), PHONES)


def test_textgrid_empty_intervals_are_kept_as_empty_labels(tmp_path):
    path = write_raw_textgrid(tmp_path / "x.TextGrid", {"phones": [(0.0, 0.2, ""), (0.2, 0.5, "ae")]}, xmax=0.5)
    assert [p.phone for p in read_alignment(path)] == ["", "ae"]


def test_textgrid_with_two_unnamed_tiers_is_refused(tmp_path):
    path = write_raw_textgrid(tmp_path / "x.TextGrid", {"a": [(0.0, 0.5, "x")], "b": [(0.0, 0.5, "y")]}, xmax=0.5)
    with pytest.raises(DataError, match="phones"):
        read_alignment(path)


@pytest.mark.parametrize("name,content", [("bad.phn", "0 abc h#\n"), ("bad.lab", "0 100\n"),
                                          ("bad.phn", "100 50 x\n"), ("bad.TextGrid", "not a textgrid\n")])
def test_malformed_files_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as exc:
        read_alignment(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_and_unknown_format_refused(tmp_path):
    with pytest.raises(DataError, match="no such"):
        read_alignment(tmp_path / "none.TextGrid")
    (tmp_path / "x.ctm").write_text("0 1 a\n")
    with pytest.raises(DataError, match="unknown alignment format"):
        read_alignment(tmp_path / "x.ctm")


def test_write_textgrid_round_trips_and_fills_gaps(tmp_path):
    phones = [Phone("sil", 0.0, 0.2), Phone("ae", 0.25, 0.35), Phone("t", 0.35, 0.5)]
    path = write_textgrid(tmp_path / "out" / "x.TextGrid", phones, duration_s=0.6)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.TextGrid"]  # written atomically, no temporary left
    back = read_alignment(path)
    assert _close([p for p in back if p.phone], phones)
    assert [p.phone for p in back if not p.phone] == ["", ""]  # the gap 0.2-0.25 and the tail 0.5-0.6
    assert back[-1].end_s == pytest.approx(0.6)


def test_lab_transcript_is_not_taken_for_an_alignment(tmp_path):
    (tmp_path / "a.lab").write_text("the cat sat\n")
    (tmp_path / "b.lab").write_text("0 2000000 sil\n")
    assert not is_time_aligned_label_file(tmp_path / "a.lab")
    assert is_time_aligned_label_file(tmp_path / "b.lab")


def test_frame_labels_concrete_example():
    phones = [Phone("a", 0.0, 0.011), Phone("b", 0.011, 0.02)]
    # hop 4 ms: frame centres at 2, 6, 10, 14, 18, 22 ms.
    assert frame_labels(phones, 6, hop_s=0.004) == ["a", "a", "a", "b", "b", None]
    assert frame_labels(phones, 3, hop_s=0.004, start_s=0.012) == ["b", "b", None]
    assert frame_labels([], 2) == [None, None]
    assert frame_labels(phones, 0) == []


@pytest.mark.parametrize("seed", range(5))
def test_frame_labels_is_the_phone_at_each_frame_centre(seed):
    rng = np.random.default_rng(seed)
    # Random intervals with random gaps between them.
    bounds = np.cumsum(rng.uniform(0.001, 0.05, size=2 * 30))
    phones = [Phone(f"p{i}", float(bounds[2 * i]), float(bounds[2 * i + 1])) for i in range(30)]
    shuffled = [phones[i] for i in rng.permutation(len(phones))]  # input order must not matter
    hop = 64 / 16000
    n = int(bounds[-1] / hop) + 5  # runs past the last phone
    start_s = float(rng.uniform(0, 0.01))
    labels = frame_labels(shuffled, n, hop_s=hop, start_s=start_s)
    assert len(labels) == n
    for i, label in enumerate(labels):
        centre = start_s + (i + 0.5) * hop
        expected = [p.phone for p in phones if p.start_s <= centre < p.end_s]
        assert label == (expected[0] if expected else None)
    assert labels[-1] is None and any(label is None for label in labels[:-5])  # gaps are found too
