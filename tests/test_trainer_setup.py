"""Trainer set-up that decides what runs on a GPU: float32 math modes (TF32 only when asked for), one
DataLoader for the whole run in schedule order, no host read in a training step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechvq.config import compose
from speechvq.errors import SpeechVQError
from speechvq.training.trainer import Trainer, set_math_modes


@pytest.fixture
def math_modes():
    """Restore torch's process-wide math flags after the test."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def _flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark


@pytest.mark.parametrize("precision,tf32", [("fp32", False), ("auto", False), ("bf16", False), ("fp16", False),
                                            ("tf32", True)])
def test_tf32_only_when_the_config_asks_for_it(math_modes, precision, tf32):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    set_math_modes(precision, cudnn_benchmark=False)
    assert _flags() == (tf32, tf32, False)
    set_math_modes(precision, cudnn_benchmark=True)
    assert _flags() == (tf32, tf32, True)


def _trainer(tmp_path, *overrides):
    cfg = compose("train", ["run_dir=R", "data.prepared=P", "trainer=debug", *overrides]).trainer
    return Trainer(nn.Linear(3, 2), lambda model, batch: (model(batch).sum(), {}), lambda epoch: [torch.zeros(3)],
                   torch.stack, cfg, tmp_path / "run", kind="vqvae", config={"model": {}}, batch_size=1)


def test_the_trainer_sets_the_math_modes_from_its_config(math_modes, tmp_path):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # cuDNN's own default
    trainer = _trainer(tmp_path)  # trainer=debug: precision fp32
    assert trainer.precision is None and _flags() == (False, False, False)
    trainer = _trainer(tmp_path, "trainer.precision=tf32", "trainer.cudnn_benchmark=true")
    assert trainer.precision is None and _flags() == (True, True, True)
    with pytest.raises(SpeechVQError, match="fp32, tf32, bf16 or fp16"):
        _trainer(tmp_path, "trainer.precision=fp64")


class _Tagged(torch.utils.data.Dataset):
    """5 items; item i of epoch e is [e, i] (the factory's epoch, so a stale dataset would show)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return torch.tensor([float(self.epoch), float(index)])


def _recording_trainer(tmp_path, seen, num_workers=0, max_steps=7, run="run"):
    cfg = compose("train", ["run_dir=R", "data.prepared=P", "trainer=debug", f"trainer.max_steps={max_steps}",
                            "trainer.checkpoint_every=3", "trainer.log_every=2"]).trainer
    model = nn.Linear(2, 1)

    def loss_fn(module, batch):
        seen.append(batch.tolist())
        return module(batch).pow(2).mean(), {}

    return Trainer(model, loss_fn, _Tagged, torch.stack, cfg, tmp_path / run, kind="vqvae", config={"model": {}},
                   batch_size=2, num_workers=num_workers, seed=3)


def test_one_data_loader_serves_every_epoch_in_schedule_order(tmp_path, monkeypatch):
    from speechvq.training import trainer as trainer_module
    from speechvq.training.schedule import BatchSchedule

    made = []
    real = torch.utils.data.DataLoader
    monkeypatch.setattr(trainer_module.torch.utils.data, "DataLoader",
                        lambda *args, **kwargs: made.append(kwargs) or real(*args, **kwargs))
    seen = []
    _recording_trainer(tmp_path, seen).fit()
    assert len(made) == 1  # 7 steps of 2 epochs of 2 steps (5 items, batches of 2): one loader
    schedule = BatchSchedule(5, 2, world_size=1, rank=0, seed=3)
    expected = [[[float(e), float(i)] for i in batch] for e in range(6) for batch in schedule.epoch_batches(e)]
    assert seen == expected[:7]

    with_worker = []
    monkeypatch.setattr(trainer_module.torch.utils.data, "DataLoader", real)
    _recording_trainer(tmp_path, with_worker, num_workers=1, run="workers").fit()
    assert with_worker == seen  # the worker process builds each epoch's dataset itself

    # resumed from the step-6 checkpoint (start of epoch 3): the rest of the same order, into epoch 4
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "last.pt").unlink()
    (checkpoints / "last.pt").write_bytes((checkpoints / "step_0000006.pt").read_bytes())
    resumed = []
    trainer = _recording_trainer(tmp_path, resumed, max_steps=9)
    trainer.fit()
    assert trainer.step == 9 and resumed == expected[6:9]


def test_the_schedule_sampler_starts_anywhere_and_crosses_epochs():
    from speechvq.training.schedule import BatchSchedule, ScheduleBatchSampler

    schedule = BatchSchedule(9, 2, world_size=2, rank=1, seed=0)  # 2 steps per epoch
    full = [batch for _, batch in zip(range(6), ScheduleBatchSampler(schedule))]
    assert full == [[(e, i) for i in batch] for e in range(3) for batch in schedule.epoch_batches(e)]
    assert [b for _, b in zip(range(3), ScheduleBatchSampler(schedule, 3))] == full[3:]  # from mid-epoch 1


HOST_READS = ("item", "tolist", "nonzero", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Count every read of a tensor's values on the host (a device sync on a GPU), by caller."""
    calls = []
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            import sys

            frame = sys._getframe(1)
            calls.append((_name, frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_lineno))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


@pytest.mark.parametrize("quantizer", ["vq", "ema"])
def test_a_training_forward_and_backward_reads_nothing_on_the_host(host_reads, quantizer):
    """The VQ-VAE's training step (k-means done, restarts every step) never waits for the device: the
    quantizer's restarts and usage stay on it, the speaker check is left to the data pipeline."""
    from speechvq.models.builders import build_vqvae
    from speechvq.training.vqvae import vqvae_loss
    from vqvae_testutils import MICRO_MODEL

    cfg = compose("train", ["run_dir=R", "data.prepared=P", f"quantizer={quantizer}", *MICRO_MODEL,
                            "model.quantizer.kmeans_init=true", "model.quantizer.restart_after_steps=1"])
    torch.manual_seed(0)
    model = build_vqvae(cfg.model, num_speakers=2).train()
    batch = {"audio": torch.rand(2, 1024) * 0.2 - 0.1, "speaker": torch.tensor([0, 1])}
    vqvae_loss(model, batch)[0].backward()  # the first forward: k-means (reads once whether it has run)
    host_reads.clear()
    restarts = int(model.quantizer.restart_count)
    host_reads.clear()
    for _ in range(3):
        loss, metrics = vqvae_loss(model, batch)
        loss.backward()
    assert host_reads == []
    assert int(model.quantizer.restart_count) > restarts  # restarts did happen, on the device
    model.eval()
    with pytest.raises(SpeechVQError, match="speaker index out of range"):
        model(batch["audio"], torch.tensor([0, 2]))  # outside training the indices are checked
