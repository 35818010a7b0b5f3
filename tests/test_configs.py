"""Every config composes and builds; presets have the shapes they promise; values have one source."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from speechvq.config import compose, config_dir
from speechvq.models.builders import build_vqvae

REQUIRED = ["run_dir=RUN", "data.prepared=PREP"]
GROUPS = ("data", "model", "quantizer", "trainer", "experiment")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in _options(group)]
)
def test_every_group_option_composes_and_resolves(override):
    cfg = compose("train", REQUIRED + [override])
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert plain["model"]["quantizer"]["num_codes"] == plain["model"]["num_codes"]
    assert plain["model"]["quantizer"]["dim"] == plain["model"]["code_dim"]
    assert plain["data"]["segment_samples"] % 64 == 0


def test_every_group_has_options_and_train_yaml_requires_run_dir_and_data():
    for group in ("data", "model", "quantizer", "trainer"):
        assert _options(group), group
    cfg = compose("train")
    assert OmegaConf.is_missing(cfg, "run_dir")
    assert OmegaConf.is_missing(cfg.data, "prepared")


def test_train_prior_yaml_composes():
    cfg = compose("train_prior", ["run_dir=RUN", "codes=CODES"])
    assert OmegaConf.to_container(cfg, resolve=True) is not None


def test_interpolation_gives_one_source_for_codebook_size():
    cfg = compose("train", REQUIRED + ["model.num_codes=128", "model.code_dim=16", "quantizer=vq"])
    assert cfg.model.quantizer.num_codes == 128 and cfg.model.quantizer.dim == 16


@pytest.mark.parametrize("quantizer", _options("quantizer"))
def test_tiny_preset_builds_and_runs(quantizer):
    torch.manual_seed(0)
    cfg = compose("train", REQUIRED + ["model=tiny", f"quantizer={quantizer}"])
    assert cfg.model.num_codes == 512  # the tiny preset keeps the paper's codebook
    model = build_vqvae(cfg.model, num_speakers=3).eval()
    wav = 0.1 * torch.randn(2, 700)
    with torch.no_grad():
        out = model(wav, torch.tensor([0, 2]))
    assert out.nll.shape == (2, 700)
    assert out.vq.codes.shape == (2, 11)
    assert torch.isfinite(out.loss)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_preset_is_the_design_decoder():
    cfg = compose("train", REQUIRED + ["model=reference"])
    d = cfg.model.decoder
    assert (d.output, d.layers, d.stacks, d.residual_channels, d.gate_channels, d.skip_channels, d.kernel_size) == (
        "mulaw", 20, 2, 64, 128, 128, 2)
    assert (d.cond_channels, d.speaker_dim) == (64, 64)
    model = build_vqvae(cfg.model, num_speakers=4)
    dilations = [layer.dilation for layer in model.decoder.wavenet.modules() if isinstance(layer, torch.nn.Conv1d)
                 and layer.kernel_size == (2,)]
    assert sorted(d[0] for d in dilations) == sorted([2**i for i in range(10)] * 2)


def test_paper_preset_sizes():
    cfg = compose("train", REQUIRED + ["model=paper"])
    d = cfg.model.decoder
    assert (d.layers, d.stacks, d.residual_channels, d.gate_channels, d.skip_channels) == (30, 3, 256, 512, 256)
    assert cfg.model.encoder.channels == 256
    model = build_vqvae(cfg.model, num_speakers=109)
    tiny = build_vqvae(compose("train", REQUIRED).model, num_speakers=109)
    assert _params(model.decoder) > 20 * _params(tiny.decoder)


@pytest.mark.parametrize("preset", _options("model"))
def test_every_model_preset_builds_a_model_whose_hop_is_64(preset):
    cfg = compose("train", REQUIRED + [f"model={preset}"])
    model = build_vqvae(cfg.model, num_speakers=2)
    assert model.hop_length == model.decoder.hop_length == 64
    assert model.sample_rate == 16000 and model.codes_per_second == 250


@pytest.mark.parametrize("overrides", [
    ["+model.decoder.hop_length=32"],  # the decoder's hop disagrees with the encoder's 2**6
    ["model=tiny_sf", "+model.decoder.hop_length=128"],
])
def test_mismatched_geometry_is_a_one_line_error(overrides):
    from speechvq.errors import SpeechVQError

    cfg = compose("train", REQUIRED + overrides)
    with pytest.raises(SpeechVQError, match="hop_length") as info:
        build_vqvae(cfg.model, num_speakers=2)
    assert "\n" not in str(info.value)


def test_the_decoder_takes_the_encoders_hop():
    cfg = compose("train", REQUIRED + ["model.encoder.num_downsamples=5"])
    model = build_vqvae(cfg.model, num_speakers=2).eval()
    assert model.hop_length == model.decoder.hop_length == 32
    with torch.no_grad():
        out = model(0.1 * torch.randn(1, 320), torch.tensor([0]))
    assert out.vq.codes.shape == (1, 10) and out.nll.shape == (1, 320)


def test_modules_of_another_geometry_are_refused():
    from speechvq.errors import SpeechVQError
    from speechvq.models.builders import build_decoder, build_encoder, build_quantizer
    from speechvq.models.vqvae import VQVAE

    model_cfg = compose("train", REQUIRED).model
    with pytest.raises(SpeechVQError, match="hop_length=32"):
        VQVAE(build_encoder(model_cfg), build_quantizer(model_cfg), build_decoder(model_cfg, 2, hop_length=32))


@pytest.mark.parametrize("override", ["model.decoder.stacks=3", "model.decoder.gate_channels=33",
                                      "model.encoder.num_downsamples=0"])
def test_config_that_cannot_be_built_is_a_one_line_error(override):
    from speechvq.errors import SpeechVQError

    cfg = compose("train", REQUIRED + [override])
    with pytest.raises(SpeechVQError, match="config model|encoder") as info:
        build_vqvae(cfg.model, num_speakers=2)
    assert "\n" not in str(info.value)


def test_misspelt_model_key_is_a_one_line_error():
    from speechvq.errors import SpeechVQError

    cfg = compose("train", REQUIRED + ["+model.decoder.layerz=3"])
    with pytest.raises(SpeechVQError, match="model.decoder.*layerz"):
        build_vqvae(cfg.model, num_speakers=2)


RECIPE_CONFS = sorted((config_dir().parent / "recipes" / "vctk" / "conf").glob("*.yaml"))


@pytest.mark.parametrize("conf", RECIPE_CONFS, ids=lambda p: p.stem)
def test_every_recipe_conf_trains_a_model_that_builds(conf):
    """The recipe's train (and vocoder) overrides compose with configs/train.yaml and build."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_conf", conf.parent.parent / "local" / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recipe = module.load(str(conf))  # resolves `base:`
    for section in ("train", "vocoder"):
        overrides = list(OmegaConf.select(recipe, f"{section}.overrides", default=None) or [])
        if section == "vocoder" and not overrides:
            continue
        cfg = compose("train", REQUIRED + overrides)
        model = build_vqvae(cfg.model, num_speakers=3)
        assert cfg.data.segment_samples % model.hop_length == 0
        assert cfg.trainer.max_steps >= 1
