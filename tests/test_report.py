"""The samples page: built from a tiny fake run directory; every referenced file exists."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

import numpy as np
import pytest

from speechvq.analysis import report
from speechvq.analysis.report import build_report, f0_contour_figure, headline_figures, read_scalars
from speechvq.audio import save_wav
from speechvq.data.codes import write_corpus_codes
from speechvq.fileio import write_json_atomic, write_jsonl_atomic


class _Refs(html.parser.HTMLParser):
    """Collects src/href attributes and counts tags."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.refs.extend(v for k, v in attrs if k in ("src", "href") and v)


def _parse(index: Path) -> _Refs:
    parser = _Refs()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def _tone(path: Path, hz: float, seconds: float = 0.25) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    return save_wav(path, 0.3 * np.sin(2 * np.pi * hz * t))


def make_fake_run(root: Path, with_tb: bool = True) -> Path:
    """A run directory as recipes/vctk/run.sh leaves it, with tiny contents."""
    run = root / "run"
    corpus = root / "corpus"
    sources = {spk: _tone(corpus / spk / "u1.wav", hz) for spk, hz in (("A", 220.0), ("B", 330.0))}
    write_jsonl_atomic(run / "data" / "manifest.jsonl", [
        {"id": f"{spk}_u1", "speaker": spk, "split": "test", "num_samples": 4000, "offset": 0,
         "source": str(p), "text": "a tone", "alignment": None} for spk, p in sources.items()])
    conv = run / "convert" / "conversions"
    converted = _tone(conv / "A_u1_to_B.wav", 300.0)
    write_jsonl_atomic(conv / "conversions.jsonl", [
        {"source": str(sources["A"]), "source_speaker": "A", "utterance": "u1", "target_speaker": "B",
         "output": str(converted)}])
    rec = run / "convert" / "reconstructions"
    reconstructed = _tone(rec / "A_u1_to_A.wav", 225.0)
    write_jsonl_atomic(rec / "conversions.jsonl", [
        {"source": str(sources["A"]), "source_speaker": "A", "utterance": "u1", "target_speaker": "A",
         "output": "A_u1_to_A.wav"}])
    _tone(run / "prior" / "samples" / "B.wav", 440.0)
    write_json_atomic(run / "prior" / "evaluate.json", {"prior_bits_per_code": 5.1, "unigram_bits_per_code": 7.9,
                                                         "bitrate_bits_per_second": 1275.0})
    write_json_atomic(run / "vqvae" / "diagnose.json", {
        "perplexity": 120.5, "used_codes": 300, "dead_codes": 212, "nll_true_bits_per_sample": 3.1,
        "nll_other_bits_per_sample": 4.2, "collapse_gap_bits_per_sample": 1.1})
    write_json_atomic(run / "probe" / "probe.json", {
        "many_to_one_accuracy": 0.42, "majority_baseline": 0.12, "pnmi": 0.3, "num_frames": 1000,
        "per_phone_f1": {"aa": 0.5, "sil": 0.9}})
    from speechvq.analysis.report_figures import _figure  # a real PNG, as the probe writes

    fig = _figure(1, 1)
    fig.add_subplot(1, 1, 1).plot([0, 1])
    fig.savefig(run / "probe" / "confusion.png")
    write_json_atomic(run / "score" / "conversions.json", {
        "conversions": [{"output": str(converted), "target_similarity": 0.8, "source_similarity": 0.6,
                         "closer_to_target": True,
                         "mcd_db": 6.25, "code_agreement": 0.5, "voiced_retention": 0.9, "f0_error_cents": None,
                         "flatness_ratio": 1.5, "f0_closer_to_target": True}],
        "pairs": {"A->B": {"target_similarity": 0.8, "source_similarity": 0.6, "closer_to_target": 1.0,
                                              "mcd_db": None, "code_agreement": 0.5}},
        "overall": {"target_similarity": 0.8, "source_similarity": 0.6, "closer_to_target": 1.0, "mcd_db": None,
                    "code_agreement": 0.5, "voiced_retention": 0.9, "f0_error_cents": None, "flatness_ratio": 1.5,
                    "f0_closer_to_target": 0.75},
        "real": False})
    recon_scores = {"target_similarity": 0.9, "source_similarity": 0.9, "closer_to_target": None, "mcd_db": 4.5,
                    "code_agreement": 0.7, "voiced_retention": 0.934, "f0_error_cents": 35.4, "flatness_ratio": 1.234,
                    "envelope_r2": 0.567, "f0_closer_to_target": None}
    write_json_atomic(run / "score" / "reconstructions.json", {
        "conversions": [{"output": str(reconstructed), **recon_scores}],
        "pairs": {"A->A": recon_scores}, "overall": recon_scores, "real": False})
    # `score --real`: the target speakers' recordings scored in place of the outputs (the ceiling)
    write_json_atomic(run / "score" / "real.json", {
        "conversions": [{"output": str(sources["B"]), "target_similarity": 0.95, "source_similarity": 0.3,
                         "closer_to_target": True, "voiced_retention": 0.2}],
        "overall": {"target_similarity": 0.95, "source_similarity": 0.3, "closer_to_target": 0.5}, "real": True})
    (run / "vqvae" / "config.yaml").write_text(  # an older config: decoder without a type (the WaveNet)
        "model:\n  num_codes: 512\n  decoder:\n    speaker_dim: 16\n    layers: 10\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    write_corpus_codes(run / "codes", [({"id": "A_u1", "speaker": "A", "split": "train"}, rng.integers(0, 40, 60)),
                                       ({"id": "B_u1", "speaker": "B", "split": "test"}, rng.integers(0, 80, 60))],
                       {"num_codes": 512})
    if with_tb:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "vqvae" / "tb"))
        for step in range(5):
            writer.add_scalar("train/loss", 5.0 - step, step)
            writer.add_scalar("valid/perplexity", 10.0 + step, step)
        writer.close()
    return run


def test_page_references_only_existing_relative_files(tmp_path):
    run = make_fake_run(tmp_path)
    index = build_report(run)
    assert index == run / "report" / "index.html"
    page = _parse(index)
    assert page.refs, "the page references no files"
    for ref in page.refs:
        assert not ref.startswith(("/", "file:", "http:", "https:")), ref
        assert (index.parent / ref).is_file(), ref
    # original + reconstruction + one conversion + one prior sample, each with a spectrogram
    assert page.tags["audio"] == 4
    audio_refs = [r for r in page.refs if r.endswith(".wav")]
    assert len(set(audio_refs)) == 4
    text = index.read_text()
    for section in ("samples", "prior", "probe", "codes", "curves", "scores", "summary"):
        assert f"id='{section}'" in text, section
    assert "converted to B" in text and "reconstruction (A)" in text
    assert ("similarity to target 0.8 / source 0.6 · MCD 6.25 dB · code agreement 0.5 · voicing kept 90% · "
            "flatness ratio 1.50</p>") in text
    assert ("similarity to target 0.9 / source 0.9 · MCD 4.50 dB · code agreement 0.7 · voicing kept 93% · "
            "F0 error 35 cents · flatness ratio 1.23 · envelope R² 0.57</p>") in text
    assert "<p class='decoder'>Decoder of the outputs: <b>autoregressive WaveNet</b></p>" in text
    assert "real (real recordings of the target speakers: the ceiling)" in text
    assert "valid/perplexity" in read_scalars(run / "vqvae" / "tb")
    # the page survives being moved elsewhere (relative links only)
    moved = tmp_path / "moved"
    (run / "report").rename(moved)
    assert all((moved / r).is_file() for r in _parse(moved / "index.html").refs)


def test_missing_parts_are_noted_not_fatal(tmp_path):
    run = make_fake_run(tmp_path, with_tb=False)
    (run / "probe" / "probe.json").unlink()
    (run / "probe" / "confusion.png").unlink()
    (run / "convert" / "conversions" / "A_u1_to_B.wav").unlink()
    index = build_report(run)
    text = index.read_text()
    assert "id='probe'" not in text and "id='curves'" not in text
    assert "no probe results" in text and "training curves left out" in text
    assert "A_u1_to_B.wav: file missing" in text
    assert _parse(index).tags["audio"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    page = _parse(build_report(empty))
    assert "audio" not in page.tags and page.refs == []


def test_headline_figures(tmp_path):
    run = make_fake_run(tmp_path, with_tb=False)
    figures = dict(headline_figures(run))
    assert figures["probe many-to-one accuracy"] == "0.420 vs majority baseline 0.120 (3.5x)"
    assert figures["collapse gap"] == "1.100 bits/sample (own codes 3.100, other codes 4.200)"
    assert figures["speaker similarity"] == "target 0.800 vs source 0.600"
    assert figures["conversion MCD"] == "– (no parallel references)"
    assert figures["closer to target"] == "100% of conversions"
    assert figures["closer to target (real recordings)"] == "50% of real recordings"
    assert figures["F0 closer to target"] == "75% of conversions"
    assert figures["voicing kept"] == "93.4% of the sources' voiced frames"
    assert figures["F0 error"] == "35 cents (median)"
    assert figures["flatness ratio"] == "1.23x (output / source spectral flatness)"
    assert figures["envelope dynamics"] == "R² 0.57 (the source's formant movements reproduced)"
    assert figures["reconstruction MCD"] == "4.50 dB"
    assert figures["decoder"] == "autoregressive WaveNet"
    assert headline_figures(tmp_path / "nothing") == []


def test_headline_figures_of_old_score_files(tmp_path):
    """Score files written before the voicing metrics: their lines read "–"; no config, no decoder line."""
    run = make_fake_run(tmp_path, with_tb=False)
    old = {"target_similarity": 0.8, "source_similarity": 0.6, "closer_to_target": 1.0, "mcd_db": 5.0,
           "code_agreement": 0.5}
    for name in ("conversions", "reconstructions"):
        write_json_atomic(run / "score" / f"{name}.json", {"conversions": [], "pairs": {}, "overall": old})
    write_json_atomic(run / "score" / "real.json",
                      {"conversions": [], "overall": {"target_similarity": 0.9}, "real": True})
    (run / "vqvae" / "config.yaml").unlink()
    figures = headline_figures(run)
    labels = [label for label, _ in figures]
    assert "decoder" not in labels
    values = dict(figures)
    for label in ("voicing kept", "F0 error", "flatness ratio", "envelope dynamics", "F0 closer to target",
                  "closer to target (real recordings)"):
        assert values[label] == "–", label
    assert values["conversion MCD"] == "5.00 dB"
    text = build_report(run).read_text(encoding="utf-8")
    assert "class='decoder'" not in text and "<th>voicing kept</th><td>–</td>" in text


@pytest.mark.parametrize("files, expected", [
    ({"vqvae": "source_filter"}, "source-filter (VQ-VAE decoder)"),
    ({"vqvae": "wavenet"}, "autoregressive WaveNet"),
    ({"vqvae": "wavenet", "vocoder": "source_filter"}, "source-filter unit vocoder (RUN/vocoder)"),
])
def test_decoder_is_named(tmp_path, files, expected):
    from omegaconf import OmegaConf

    run = make_fake_run(tmp_path, with_tb=False)
    for folder, kind in files.items():
        config = {"model": {"num_codes": 512, "decoder": {"type": kind, "speaker_dim": 16}}, "trainer": {"steps": 10}}
        (run / folder).mkdir(exist_ok=True)
        (run / folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)), encoding="utf-8")
    assert dict(headline_figures(run))["decoder"] == expected
    text = build_report(run).read_text(encoding="utf-8")
    assert f"Decoder of the outputs: <b>{expected}</b>" in text
    assert f"<tr><th>decoder</th><td>{expected}</td></tr>" in text


def test_unreadable_config_names_no_decoder(tmp_path):
    run = make_fake_run(tmp_path, with_tb=False)
    (run / "vqvae" / "config.yaml").write_text("model: [unclosed", encoding="utf-8")
    assert "decoder" not in dict(headline_figures(run))
    text = build_report(run).read_text(encoding="utf-8")
    assert "class='decoder'" not in text and "vqvae/config.yaml" in text and "decoder not named" in text


def test_f0_contour_per_utterance(tmp_path, monkeypatch):
    run = make_fake_run(tmp_path, with_tb=False)
    # a second source utterance: B's recording converted to A (A's u1 is its reference)
    source_b = tmp_path / "corpus" / "B" / "u1.wav"
    conv = run / "convert" / "b_to_a"
    _tone(conv / "B_u1_to_A.wav", 200.0)
    write_jsonl_atomic(conv / "conversions.jsonl", [
        {"source": str(source_b), "source_speaker": "B", "utterance": "u1", "target_speaker": "A",
         "output": "B_u1_to_A.wav"}])
    drawn: list[list[tuple]] = []

    def recording(tracks, hop_seconds):
        drawn.append(tracks)
        return f0_contour_figure(tracks, hop_seconds)

    monkeypatch.setattr(report, "f0_contour_figure", recording)
    index = build_report(run)
    text = index.read_text(encoding="utf-8")
    page = _parse(index)
    f0_images = re.findall(r"<img class='plot' src='([^']+)' alt='F0 contours: ([^']+)'>", text)
    assert [alt for _, alt in f0_images] == ["A_u1", "B_u1"]
    assert text.count("<div class='utt'>") == 2
    for src, _ in f0_images:
        assert src in page.refs and (index.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # labels name the speakers; the target's real recording of the sentence is dashed
    first = {label: (f0, style) for label, f0, _, style in drawn[0]}
    assert list(first) == ["original (A)", "reconstruction (A)", "converted to B", "real recording (B)"]
    assert [style for _, style in first.values()] == ["-", ":", "-", "--"]
    for label, hz in (("original (A)", 220.0), ("converted to B", 300.0), ("real recording (B)", 330.0)):
        voiced = first[label][0][first[label][0] > 0]
        assert voiced.size > 10 and abs(np.median(voiced) / hz - 1) < 0.05, label
    assert [label for label, *_ in drawn[1]] == ["original (B)", "converted to A", "real recording (A)"]


def test_f0_contour_figure_draws_voiced_frames_on_a_log_axis():
    f0 = np.array([0, 0, 200, 210, 0, 220, 0], dtype=np.float32)
    fig = f0_contour_figure([("original (A)", f0, "C0", "-"), ("real B", f0 * 1.5, "C1", "--")], 0.004)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["original (A)", "real B"]
    solid, dashed = ax.get_lines()
    assert dashed.get_linestyle() == "--"
    y = np.asarray(solid.get_ydata(), dtype=float)
    assert np.isnan(y[[0, 1, 4, 6]]).all() and np.allclose(y[[2, 3, 5]], [200, 210, 220])
    assert np.allclose(solid.get_xdata()[:3], [0, 0.004, 0.008])
    low, high = ax.get_ylim()
    assert low < 200 and high > 330


def test_cli_report(tmp_path, capsys):
    from speechvq.cli import main

    run = make_fake_run(tmp_path, with_tb=False)
    assert main(["report", str(run), "--out", str(tmp_path / "page"), "--utterances", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert Path(lines[-1]) == tmp_path / "page" / "index.html"
    assert any(line.startswith("collapse gap:") for line in lines)
    assert main(["report", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]"])
def test_unreadable_json_is_left_out(tmp_path, bad):
    run = make_fake_run(tmp_path, with_tb=False)
    (run / "vqvae" / "diagnose.json").write_text(bad)
    text = build_report(run).read_text()
    assert "diagnose.json" in text and "left out" in text
    assert "collapse gap" not in dict(headline_figures(run))


PROBE_WITH_BASELINES = {
    "many_to_one_accuracy": 0.42, "pnmi": 0.3, "utterance_speaker_accuracy": 0.25,
    "baselines": {"logmel_kmeans": {"num_clusters": 512, "many_to_one_accuracy": 0.6, "pnmi": 0.5,
                                    "utterance_speaker_accuracy": 1.0},
                  "mfcc_kmeans": {"num_clusters": 512, "many_to_one_accuracy": 0.55, "pnmi": 0.45,
                                  "utterance_speaker_accuracy": 0.9},
                  "codes_over_best": {"many_to_one_accuracy": 0.7, "pnmi": 0.6}},
    "abx": {"within_speaker": {"z_e": 0.1, "z_q": 0.12, "codes": 0.2, "logmel": None},
            "across_speaker": {"z_e": 0.15, "z_q": 0.18, "codes": 0.3, "logmel": 0.25},
            "num_items": 162, "num_contexts": 13},
}


def test_probe_codes_against_baselines(tmp_path):
    assert report.unit_comparison({"many_to_one_accuracy": 0.4}) == {}  # an older probe JSON: no comparison
    rows = report.unit_comparison(PROBE_WITH_BASELINES)
    assert list(rows) == ["codes", "z_q", "z_e", "logmel kmeans", "mfcc kmeans", "log-mel frames"]
    assert rows["codes"] == {"many_to_one_accuracy": 0.42, "pnmi": 0.3, "utterance_speaker_accuracy": 0.25,
                             "within_speaker": 0.2, "across_speaker": 0.3}
    assert rows["log-mel frames"] == {"within_speaker": None, "across_speaker": 0.25}
    assert rows["logmel kmeans"]["many_to_one_accuracy"] == 0.6

    run = make_fake_run(tmp_path, with_tb=False)
    assert "Codes against baselines" not in build_report(run).read_text()
    write_json_atomic(run / "probe" / "probe.json", PROBE_WITH_BASELINES)
    index = build_report(run)
    text = index.read_text()
    assert "<h3>Codes against baselines</h3>" in text and "ABX on 162 triphone items" in text
    table = text[text.index("<h3>Codes against baselines</h3>"):]
    assert "<tr><td>mfcc kmeans</td><td>0.55</td><td>0.45</td><td>0.9</td><td>–</td><td>–</td></tr>" in table
    chart = [r for r in _parse(index).refs if "units_vs_baselines" in r]
    assert len(chart) == 1 and (index.parent / chart[0]).read_bytes()[:4] == b"\x89PNG"


def test_texts_from_the_run_are_escaped(tmp_path):
    """The template autoescapes: a transcript or probe key with markup shows as text, not as tags."""
    import json

    run = make_fake_run(tmp_path, with_tb=False)
    manifest = run / "data" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["text"] = "a <script>tone</script> & 'quotes'"
    write_jsonl_atomic(manifest, rows)
    write_json_atomic(run / "probe" / "probe.json", {"many_to_one_accuracy": 0.4, "<i>key</i>": "x & y"})
    index = build_report(run)
    text = index.read_text(encoding="utf-8")
    assert "script" not in _parse(index).tags and "i" not in _parse(index).tags
    assert "a &lt;script&gt;tone&lt;/script&gt; &amp; &#39;quotes&#39;" in text
    assert "<tr><th>&lt;i&gt;key&lt;/i&gt;</th><td>x &amp; y</td></tr>" in text
