"""Training on CUDA (skipped without it; tools/gpu_check.sh runs ``pytest -m gpu``): bf16 steps stay
finite with a float32 EMA codebook, a resumed run ends where an uninterrupted one does, and a
training step does not wait for the device."""

from __future__ import annotations

import shutil

import pytest
import torch

from speechvq.config import compose
from speechvq.training.vqvae import train
from vqvae_testutils import micro_overrides, write_prepared_corpus

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = ["trainer.device=cuda", "trainer.precision=bf16", "quantizer=ema"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def full_run(prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("gpu") / "run"
    return run, train(compose("train", micro_overrides(run, prepared, *CUDA)))


def test_bf16_training_stays_finite_and_the_ema_codebook_stays_float32(full_run):
    run, result = full_run
    assert result.step == 6 and result.skipped_updates == 0
    quantizer = result.model.quantizer
    for name in ("codebook", "ema_count", "ema_sum"):
        buffer = getattr(quantizer, name)
        assert buffer.dtype == torch.float32 and buffer.is_cuda and torch.isfinite(buffer).all(), name
    for name, parameter in result.model.named_parameters():
        assert parameter.dtype == torch.float32 and torch.isfinite(parameter).all(), name
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert payload["rng"]["cuda"].dtype == torch.uint8  # the training device's generator alone
    assert payload["scaler"] == {}  # bf16: no GradScaler


def test_resume_on_cuda_ends_where_the_uninterrupted_run_does(full_run, prepared, tmp_path):
    full, result = full_run
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_0000003.pt", killed / "checkpoints" / "last.pt")
    resumed = train(compose("train", micro_overrides(killed, prepared, *CUDA)))
    assert resumed.step == 6
    expected = result.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        # same data, RNG and optimizer state; CUDA's atomic adds (index_add_, conv backward) may
        # round differently from run to run, so equal up to float32 reassociation
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_a_training_step_does_not_wait_for_the_device():
    """The forward of a training step (quantizer restarts and usage, speaker check) reads nothing back.
    (The backward is left out: torch's own embedding backward reads a segment count.)"""
    from speechvq.models.builders import build_vqvae
    from speechvq.training.vqvae import vqvae_loss
    from vqvae_testutils import MICRO_MODEL

    cfg = compose("train", ["run_dir=R", "data.prepared=P", "quantizer=ema", *MICRO_MODEL,
                            "model.quantizer.kmeans_init=true", "model.quantizer.restart_after_steps=1"])
    model = build_vqvae(cfg.model, num_speakers=2).cuda().train()
    batch = {"audio": (torch.rand(2, 1024) * 0.2 - 0.1).cuda(), "speaker": torch.tensor([0, 1]).cuda()}
    vqvae_loss(model, batch)[0].backward()  # k-means on the first batch (reads once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                vqvae_loss(model, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
