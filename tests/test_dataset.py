import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_wav, write_folder_corpus, write_raw_textgrid

from speechvq.data.alignments import Phone
from speechvq.data.dataset import PreparedCorpus, SegmentDataset, collate_segments, iter_utterances
from speechvq.data.prepare import prepare_corpus, split_file
from speechvq.errors import DataError, UnknownSpeakerError

SR = 16000
LEVEL = 0.05  # the audio of phone k is the constant (k + 1) * LEVEL, silence where no phone
SEGMENT = 640  # 10 code frames


def _write_labelled_utterance(path, num_samples: int, rng: np.random.Generator, num_phones: int = 6) -> None:
    """A wav whose sample values say which phone covers them, and its TextGrid.

    Boundaries are odd sample indices, so no 64-sample frame centre (always even) sits on one;
    the last stretch of the file is not covered by any phone.
    """
    bounds = np.sort(rng.choice(np.arange(1, int(num_samples * 0.9), 2), size=num_phones + 1, replace=False))
    audio = np.zeros(num_samples, dtype=np.float32)
    entries = []
    for k in range(num_phones):
        audio[bounds[k]: bounds[k + 1]] = (k + 1) * LEVEL
        entries.append((bounds[k] / SR, bounds[k + 1] / SR, f"p{k}"))
    sf.write(str(path), audio, SR, subtype="PCM_16")
    write_raw_textgrid(path.with_suffix(".TextGrid"), {"phones": entries}, xmax=num_samples / SR)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A prepared 2-speaker corpus with phone-labelled audio (one utterance shorter than a segment)."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for speaker in ("sa", "sb"):
        (root / "src" / speaker).mkdir(parents=True)
        for i, n in enumerate([4000, 3001, 2500, 500]):
            _write_labelled_utterance(root / "src" / speaker / f"u{i}.wav", n, rng)
    prepare_corpus(root / "src", root / "out", workers=1, valid_fraction=0.0, test_fraction=0.0, progress=False)
    return PreparedCorpus(root / "out")


def test_corpus_records_speakers_and_phones(labelled):
    utts = labelled.utterances("train")
    assert len(utts) == 8 and labelled.utterances("test") == []
    assert labelled.speakers == ["sa", "sb"]
    assert labelled.has_alignments
    phones = labelled.phones(utts[0])
    assert isinstance(phones[0], Phone) and [p.phone for p in phones] == [f"p{k}" for k in range(6)]


def test_segments_carry_audio_and_speaker_and_short_utterances_are_zero_padded(labelled):
    ds = SegmentDataset(labelled, "train", SEGMENT, speakers=labelled.speakers, seed=1)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"audio", "speaker"}  # training reads no phone labels
        assert item["audio"].shape == (SEGMENT,)
        assert int(item["speaker"]) == labelled.speakers.index(ds.utterances[i].speaker)
    index = next(i for i, u in enumerate(ds.utterances) if u.num_samples == 500)
    item = ds[index]
    assert np.array_equal(item["audio"][:500].numpy(), labelled.audio(ds.utterances[index]))
    assert torch.all(item["audio"][500:] == 0)


def test_segments_are_random_reproducible_and_frame_aligned(tmp_path):
    make_wav(tmp_path / "src" / "spk" / "noise.wav", seconds=4000 / SR, freq=None)  # every segment is unique
    prepare_corpus(tmp_path / "src", tmp_path / "out", workers=1, progress=False)
    corpus = PreparedCorpus(tmp_path / "out")
    full = corpus.audio(corpus.utterances()[0])

    def starts(seed, epochs=range(6)):
        ds = SegmentDataset(corpus, "train", SEGMENT, corpus.speakers, seed=seed)
        windows = np.lib.stride_tricks.sliding_window_view(full, SEGMENT)
        found = []
        for epoch in epochs:
            ds.set_epoch(epoch)
            audio = ds[0]["audio"].numpy()
            assert np.array_equal(ds[0]["audio"].numpy(), audio)  # a re-read (resume, other worker) is identical
            found += np.flatnonzero((windows == audio).all(axis=1)).tolist()
        assert len(found) == len(epochs)  # each segment is a contiguous piece of the utterance
        return found

    a = starts(seed=3)
    assert a == starts(seed=3)
    assert len(set(a)) > 1  # epochs differ
    assert all(s % 64 == 0 for s in a)
    assert starts(seed=4) != a


def test_collate_shapes_and_dataloader_workers(labelled):
    ds = SegmentDataset(labelled, "train", SEGMENT, labelled.speakers)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_segments, num_workers=1)
    batch = next(iter(loader))
    assert batch["audio"].shape == (3, SEGMENT) and batch["audio"].dtype == torch.float32
    assert batch["speaker"].shape == (3,) and batch["speaker"].dtype == torch.int64
    assert len(pickle.dumps(labelled)) < 100_000  # the memmaps are not copied into workers


def test_iter_utterances_round_trip_equals_source_within_int16_precision(tmp_path):
    write_folder_corpus(tmp_path / "src", speakers=("x", "y"), utterances=("a", "b", "c"), seconds=0.3)
    prepare_corpus(tmp_path / "src", tmp_path / "out", workers=1, progress=False)
    corpus = PreparedCorpus(tmp_path / "out")
    seen = []
    for split in ("train", "valid", "test"):
        for utt, audio in iter_utterances(corpus, split):
            source, sr = sf.read(utt.source, dtype="float32")
            assert sr == SR and audio.dtype == np.float32 and audio.shape == source.shape
            assert np.abs(audio - source).max() <= 2 / 32768
            seen.append(utt.id)
    assert sorted(seen) == sorted(u.id for u in corpus.utterances())
    assert [u.id for u, _ in iter_utterances(corpus, None)] == [u.id for u in corpus.utterances()]


def test_errors(tmp_path, labelled):
    with pytest.raises(DataError, match="not a prepared corpus"):
        PreparedCorpus(tmp_path)
    with pytest.raises(DataError, match="multiple of 64"):
        SegmentDataset(labelled, "train", 100, labelled.speakers)
    with pytest.raises(UnknownSpeakerError, match="sb"):
        SegmentDataset(labelled, "train", SEGMENT, ["sa"])
    with pytest.raises(DataError, match="no utterances in split 'valid'"):
        SegmentDataset(labelled, "valid", SEGMENT, labelled.speakers)
    with pytest.raises(DataError, match="unknown split"):
        labelled.utterances("dev")

    write_folder_corpus(tmp_path / "src", speakers=("x",), utterances=("a", "b", "c"))
    prepare_corpus(tmp_path / "src", tmp_path / "out", workers=1, valid_fraction=0, test_fraction=0, progress=False)
    path = split_file(tmp_path / "out", "train")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="train.int16"):
        PreparedCorpus(tmp_path / "out")
