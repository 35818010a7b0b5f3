"""train(cfg): run directory contents, exact resume, update skipping, refused checkpoints, info."""

from __future__ import annotations

import json
import logging
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from speechvq.checkpoint import FORMAT_VERSION, save_checkpoint
from speechvq.cli import main as cli_main
from speechvq.config import compose
from speechvq.errors import CheckpointError, SpeechVQError
from speechvq.models.builders import build_vqvae
from speechvq.models.loading import load_vqvae
from speechvq.training.schedule import BatchSchedule, lr_factor
from speechvq.training.trainer import Trainer
from speechvq.training.vqvae import train
from vqvae_testutils import micro_overrides, write_prepared_corpus


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    return write_prepared_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def full_run(prepared, tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints at 3 and 6, validation at 3 and 6)."""
    run = tmp_path_factory.mktemp("full") / "run"
    result = train(compose("train", micro_overrides(run, prepared)))
    return run, result


def test_run_directory_layout(full_run):
    run, result = full_run
    assert result.step == 6 and result.skipped_updates == 0
    assert (run / "config.yaml").is_file()
    assert "num_codes: 32" in (run / "config.yaml").read_text()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step_0000003.pt", "step_0000006.pt"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"audio": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/grad_norm", "train/skipped_updates", "train/lr", "train/perplexity",
            "valid/nll_bits_per_sample", "valid/used_codes"} <= set(tags["scalars"])
    assert "valid/code_usage" in tags["histograms"]
    assert any(tag.endswith("teacher_forced") for tag in tags["audio"])
    assert set(result.valid) == {"nll_bits_per_sample", "perplexity", "used_codes"}
    assert 0 < result.valid["nll_bits_per_sample"] < 9


def test_checkpoint_is_self_contained_and_loads(full_run):
    run, result = full_run
    model, speakers, payload = load_vqvae(run / "checkpoints" / "last.pt")
    assert speakers == ["alice", "bob"]
    assert payload["step"] == 6 and payload["kind"] == "vqvae"
    assert {"optimizer", "scheduler", "scaler", "rng", "config"} <= set(payload)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in payload["model"])
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_resume_after_kill_equals_uninterrupted_run(full_run, prepared, tmp_path):
    """A run killed right after its step-3 checkpoint, then resumed, ends with identical weights."""
    full, result = full_run
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_0000003.pt", killed / "checkpoints" / "last.pt")
    resumed = train(compose("train", micro_overrides(killed, prepared)))
    assert resumed.step == 6
    expected = result.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_trainer_resume_false_starts_over(full_run, prepared, tmp_path):
    run = tmp_path / "again"
    shutil.copytree(full_run[0], run)
    result = train(compose("train", micro_overrides(run, prepared, "trainer.max_steps=1", "trainer.warmup_steps=1",
                                                        "trainer.resume=false")))
    assert result.step == 1


def test_every_update_skipped_above_threshold(prepared, tmp_path):
    overrides = micro_overrides(tmp_path / "run", prepared, "trainer.grad_skip_threshold=1e-12",
                                "trainer.max_steps=3", "trainer.valid_every=100")
    cfg = compose("train", overrides)
    torch.manual_seed(cfg.seed)
    initial = build_vqvae(cfg.model, num_speakers=2).state_dict()
    result = train(cfg)
    assert result.skipped_updates == 3
    params = dict(result.model.named_parameters())
    for name, value in params.items():
        assert torch.equal(value.detach(), initial[name]), name


class _Items(torch.utils.data.Dataset):
    """4 items; items 1 and 3 make the loss NaN."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"x": torch.full((3,), float(index + 1)), "poison": torch.tensor(index % 2 == 1)}


def _collate(items):
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def _loss(model, batch):
    loss = model(batch["x"]).pow(2).mean()
    if bool(batch["poison"].any()):
        loss = loss * float("nan")
    return loss, {}


def test_non_finite_gradients_skip_the_update(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    cfg = compose("train", ["run_dir=R", "data.prepared=P", "trainer=debug", "trainer.max_steps=8"]).trainer
    trainer = Trainer(model, _loss, lambda epoch: _Items(), _collate, cfg, tmp_path / "run", kind="vqvae",
                      config={"model": {}}, batch_size=1)
    result = trainer.fit()
    assert result.skipped_updates == 4  # two epochs of 4 items, half of them poisoned
    assert torch.isfinite(model.weight).all() and not torch.equal(model.weight, before)
    payload = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert payload["skipped_updates"] == 4


def test_batch_schedule_partitions_each_epoch_across_ranks():
    ranks = [BatchSchedule(10, 2, world_size=2, rank=r, seed=3) for r in range(2)]
    assert ranks[0].steps_per_epoch == 2
    seen = [i for r in ranks for batch in r.epoch_batches(1) for i in batch]
    assert len(seen) == len(set(seen)) == 8
    assert ranks[0].epoch_batches(0) != ranks[0].epoch_batches(1)
    assert ranks[0].locate(5) == (2, 1)


def test_lr_schedule_warms_up_and_decays():
    factors = [lr_factor(s, 100, 10, "cosine", 0.1) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[100] == pytest.approx(0.1)
    assert lr_factor(100, 100, 10, "exponential", 0.1) == pytest.approx(0.1)
    assert math.isclose(lr_factor(55, 100, 10, "exponential", 0.01), 0.1)


def test_a_warm_up_longer_than_the_run_is_clipped_with_a_warning(tmp_path):
    from speechvq.training.schedule import LRSchedule

    cfg = compose("train", ["run_dir=R", "data.prepared=P", "trainer.max_steps=200"]).trainer
    assert cfg.warmup_steps == 2000  # the default trainer's
    with pytest.warns(UserWarning, match="warmup_steps=2000.*max_steps=200"):
        trainer = Trainer(nn.Linear(3, 2), _loss, lambda epoch: _Items(), _collate, cfg, tmp_path / "run",
                          kind="vqvae", config={"model": {}}, batch_size=1)
    assert trainer.lr_schedule.warmup_steps == 200
    assert trainer.lr_schedule(199) == pytest.approx(1.0)  # the peak is reached at the last step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert LRSchedule.from_config(cfg, 2000).warmup_steps == 2000  # not longer than the run: kept
    with pytest.raises(SpeechVQError, match="trainer.decay='linear'"):
        LRSchedule.from_config({**OmegaConf.to_container(cfg), "decay": "linear"}, 200)


def test_every_training_module_is_short():
    import speechvq.training

    for path in Path(speechvq.training.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) < 450, path.name


def test_a_corpus_without_held_out_utterances_trains_without_validation_and_logs_why(tmp_path, caplog):
    from speechvq.data.prepare import prepare_corpus

    write_prepared_corpus(tmp_path, utterances=2)
    prepared = tmp_path / "train_only"
    prepare_corpus(tmp_path / "src", prepared, workers=1, valid_fraction=0.0, test_fraction=0.0, progress=False)
    with caplog.at_level(logging.WARNING, logger="speechvq.training"):
        result = train(compose("train", micro_overrides(tmp_path / "run", prepared, "trainer.max_steps=2")))
    assert result.step == 2 and result.valid == {}
    assert "no valid or test utterances: no validation, no best.pt" in caplog.text


def test_other_kind_or_newer_checkpoint_is_refused(full_run, prepared, tmp_path):
    run = tmp_path / "other"
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "last.pt", {"kind": "prior", "model": {}})
    with pytest.raises(CheckpointError, match="prior"):
        train(compose("train", micro_overrides(run, prepared)))
    payload = torch.load(full_run[0] / "checkpoints" / "last.pt", weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        load_vqvae(newer)


def test_mismatched_weights_are_refused_naming_the_file(full_run, tmp_path):
    payload = torch.load(full_run[0] / "checkpoints" / "last.pt", weights_only=True)
    payload["config"]["model"]["decoder"]["layers"] = 5
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, payload)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*(missing|unexpected|shape)"):
        load_vqvae(bad)


def test_info_cli(full_run, capsys):
    assert cli_main(["info", str(full_run[0]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "vqvae" and info["speakers"] == ["alice", "bob"]
    assert info["step"] in (3, 6)  # best.pt
    assert info["model"]["num_codes"] == 32 and info["code_usage"]["num_codes"] == 32
    assert cli_main(["info", str(full_run[0])]) == 0
    assert "speakers (2): alice, bob" in capsys.readouterr().out


def test_train_cli_reports_missing_values(capsys):
    assert cli_main(["train", "model=tiny"]) == 2
    assert "run_dir" in capsys.readouterr().err


SOURCE_FILTER = ["model=tiny_sf", "model.decoder.cond_layers=1", "model.decoder.harmonics=4"]


def test_source_filter_vqvae_trains_converts_and_keeps_f0_statistics(prepared, tmp_path):
    """(b): the source-filter decoder as the VQ-VAE's decoder, end to end from config to conversion."""
    import numpy as np

    from speechvq.data.dataset import PreparedCorpus
    from speechvq.errors import SpeechVQError
    from speechvq.f0 import F0Stats, f0_stats
    from speechvq.inference.pipeline import SpeechVQ

    run = tmp_path / "sf"
    result = train(compose("train", micro_overrides(run, prepared, *SOURCE_FILTER)))
    assert result.step == 6 and not result.model.autoregressive
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    corpus = PreparedCorpus(prepared)
    stats = {k: F0Stats.from_list(v) for k, v in payload["f0_stats"].items()}
    assert set(stats) == set(corpus.speakers)
    for name, stat in stats.items():  # the chirps of write_prepared_corpus start at 150 + 40 s Hz and rise
        voiced = np.concatenate([corpus.f0(u) for u in corpus.utterances("train") if u.speaker == name])
        assert stat.median_hz == pytest.approx(float(np.exp(np.log(voiced[voiced > 0]).mean())), rel=1e-4)
    model = SpeechVQ.from_checkpoint(run, device="cpu")
    utt = corpus.utterances("test")[0]
    wav = corpus.audio(utt)
    out = model.convert(wav, speaker=corpus.speakers[-1], source_speaker=utt.speaker)
    assert out.shape == (64 * -(-wav.shape[0] // 64),) and np.isfinite(out).all()
    assert "source-filter" in model.decoder_name

    contour, target = corpus.f0(utt), stats[corpus.speakers[-1]]
    source = stats[utt.speaker]
    kept = f0_stats([model.conversion_f0(contour, utt.speaker, corpus.speakers[-1], f0_mapping="speaker")])
    assert kept.mean - target.mean == pytest.approx((f0_stats([contour]).mean - source.mean) / source.std * target.std,
                                                    abs=1e-4)
    centred = f0_stats([model.conversion_f0(contour, utt.speaker, corpus.speakers[-1])])  # the default
    assert centred.mean == pytest.approx(target.mean, abs=1e-4)
    with pytest.raises(SpeechVQError, match="f0_mapping='octave'"):
        model.conversion_f0(contour, utt.speaker, corpus.speakers[-1], f0_mapping="octave")


def test_source_filter_commands_convert_with_pitch_shift_diagnose_and_evaluate(prepared, tmp_path, capsys):
    """The CLI follows the checkpoint: one-pass generation, --pitch-shift, no likelihood but F0 bits."""
    import json

    import numpy as np
    import soundfile as sf

    from speechvq.data.dataset import PreparedCorpus
    from speechvq.f0 import world_f0

    run = tmp_path / "sf"
    train(compose("train", micro_overrides(run, prepared, *SOURCE_FILTER)))
    corpus = PreparedCorpus(prepared)
    utt = corpus.utterances("test")[0]
    target = next(s for s in corpus.speakers if s != utt.speaker)
    outputs = {}
    for name, extra in (("mapped", []), ("octave_down", ["--pitch-shift", "-12"]),
                        ("by_speaker", ["--f0-mapping", "speaker"])):
        assert cli_main(["convert", str(run), utt.source, "--speaker", target, "--out", str(tmp_path / name),
                         "--source-speaker", utt.speaker, "--device", "cpu", "--quiet", *extra]) == 0
        assert "source-filter" in capsys.readouterr().out
        outputs[name] = sf.read(next((tmp_path / name).glob("*.wav")))[0]
    assert outputs["mapped"].shape == outputs["octave_down"].shape
    assert not np.array_equal(outputs["mapped"], outputs["octave_down"])
    assert not np.array_equal(outputs["mapped"], outputs["by_speaker"])

    assert cli_main(["diagnose", str(run), "--data", str(prepared), "--json", str(tmp_path / "d.json")]) == 0
    diagnosis = json.loads((tmp_path / "d.json").read_text())
    assert diagnosis["nll_true_bits_per_sample"] is None and diagnosis["stft_loss_true"] > 0
    assert diagnosis["collapse_gap_stft_loss"] == pytest.approx(diagnosis["stft_loss_other"]
                                                                - diagnosis["stft_loss_true"])
    assert cli_main(["evaluate", str(run), "--data", str(prepared), "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["decoder_bits_per_sample"] is None and report["total_bits_per_sample"] is None
    assert report["prior_bits_per_code"] == pytest.approx(5.0)  # log2(32) for the micro model's uniform prior
    voiced_test = sum((world_f0(corpus.audio(u)) > 0).sum() for u in corpus.utterances("test"))
    assert voiced_test > 0 and report["f0_bits_per_second"] > 0


def test_unit_vocoder_trains_only_the_decoder_on_frozen_codes(full_run, prepared, tmp_path):
    """(a): units_from=CKPT freezes the encoder and codebook of an autoregressive VQ-VAE."""
    full_run = full_run[0]
    source, _, _ = load_vqvae(full_run)
    run = tmp_path / "vocoder"
    # the vocoder's own model config has other encoder sizes: units_from replaces them with the source's
    result = train(compose("train", micro_overrides(run, prepared, *SOURCE_FILTER, f"units_from={full_run}",
                                                    "model.encoder.channels=16")))
    vocoder = result.model
    assert not vocoder.autoregressive
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(tensor, vocoder.encoder.state_dict()[name]), name
    for name, tensor in source.quantizer.state_dict().items():
        assert torch.equal(tensor, vocoder.quantizer.state_dict()[name]), name
    reloaded, _, payload = load_vqvae(run)
    assert payload["config"]["model"]["encoder"] == load_vqvae(full_run)[2]["config"]["model"]["encoder"]
    wav = torch.randn(1, 640) * 0.1
    assert torch.equal(reloaded.encode(wav), source.encode(wav))
