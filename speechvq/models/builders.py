"""Config -> model objects: the only module that reads configs (models take plain arguments).

The model config is the ``model`` node of ``configs/train.yaml`` (a preset from
``configs/model/`` with the quantizer group placed at ``model.quantizer``)::

    num_codes: 512          # K
    code_dim: 64            # D
    encoder: {channels, num_downsamples, num_res_blocks, res_channels}
    decoder: {type: wavenet|source_filter, speaker_dim, cond_channels, residual_channels, ...}
    quantizer: {type: ema|vq, num_codes, dim, beta, ...}
    jitter: 0.0             # time-jitter probability of z_q in training
    speaker_adversary: 0.0  # weight of the gradient-reversal speaker classifier on z_e
    voice_shift: 0.0        # the encoder hears its input voice-shifted by a random factor in 1 +- this (training)

``decoder.type`` chooses the autoregressive WaveNet (`Decoder`, the paper's) or the
non-autoregressive `SourceFilterDecoder`. Every other key under
``encoder``/``decoder``/``quantizer`` (except ``quantizer.type``) is passed to
the module's constructor as a keyword argument, so a misspelt key fails loudly, naming it.
Configs may be OmegaConf nodes or the plain dicts stored in checkpoints.

Geometry has one source: the decoder's ``hop_length`` (samples per code) is the encoder's
(2**num_downsamples), passed on here; a ``decoder.hop_length`` in a config must agree with it.
Any config that cannot be built (an unknown key, ``layers`` not a multiple of ``stacks``, ...)
raises a one-line `SpeechVQError` naming the config node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from speechvq.errors import SpeechVQError
from speechvq.models.decoder import Decoder
from speechvq.models.encoder import Encoder
from speechvq.models.prior import Prior
from speechvq.models.source_filter import SourceFilterDecoder
from speechvq.models.vqvae import VQVAE
from speechvq.quantization.vq import EMAVectorQuantizer, VectorQuantizer

QUANTIZERS = {"ema": EMAVectorQuantizer, "vq": VectorQuantizer}
DECODERS = {"wavenet": Decoder, "source_filter": SourceFilterDecoder}


def _plain(cfg: Mapping | DictConfig, name: str) -> dict[str, Any]:
    """A config node as a resolved plain dict; SpeechVQError naming `name` if it is not a mapping."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise SpeechVQError(f"config {name}: expected a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def _construct(cls: type, kwargs: dict[str, Any], name: str):
    """cls(**kwargs); a constructor's TypeError (unknown or missing keyword) or ValueError
    (inconsistent sizes) becomes a one-line SpeechVQError naming the config node `name`."""
    try:
        return cls(**kwargs)
    except SpeechVQError:
        raise
    except (TypeError, ValueError) as exc:  # a config mistake
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpeechVQError(f"config {name}: {message}") from None


def build_encoder(model_cfg: Mapping | DictConfig) -> Encoder:
    """``model.encoder`` (+ ``model.code_dim`` as its output dimension) -> `Encoder`."""
    model = _plain(model_cfg, "model")
    kwargs = _plain(model.get("encoder", {}), "model.encoder")
    return _construct(Encoder, {**kwargs, "dim": model["code_dim"]}, "model.encoder")


def build_quantizer(model_cfg: Mapping | DictConfig):
    """``model.quantizer`` -> `EMAVectorQuantizer` (type ema) or `VectorQuantizer` (type vq)."""
    kwargs = _plain(_plain(model_cfg, "model").get("quantizer", {}), "model.quantizer")
    kind = kwargs.pop("type", "ema")
    if kind not in QUANTIZERS:
        raise SpeechVQError(f"config model.quantizer.type={kind!r}: choose one of {sorted(QUANTIZERS)}")
    return _construct(QUANTIZERS[kind], kwargs, "model.quantizer")


def build_decoder(model_cfg: Mapping | DictConfig, num_speakers: int,
                  hop_length: int | None = None) -> Decoder | SourceFilterDecoder:
    """``model.decoder`` (+ ``model.code_dim``, the number of speakers) -> `Decoder` (type wavenet,
    the default) or `SourceFilterDecoder` (type source_filter).

    hop_length: samples per code frame, the encoder's (`build_vqvae` passes it); None: the
    encoder that ``model.encoder`` describes. A different ``decoder.hop_length`` is refused.
    """
    model = _plain(model_cfg, "model")
    kwargs = _plain(model.get("decoder", {}), "model.decoder")
    kind = kwargs.pop("type", "wavenet")
    if kind not in DECODERS:
        raise SpeechVQError(f"config model.decoder.type={kind!r}: choose one of {sorted(DECODERS)}")
    if num_speakers < 1:
        raise SpeechVQError(f"num_speakers={num_speakers}: a decoder needs at least one speaker")
    if hop_length is None:
        hop_length = build_encoder(model).hop_length
    if "hop_length" in kwargs and kwargs["hop_length"] != hop_length:
        raise SpeechVQError(
            f"config model.decoder.hop_length={kwargs['hop_length']} disagrees with the encoder's hop of "
            f"{hop_length} samples (2**model.encoder.num_downsamples); remove it or change the encoder")
    kwargs.update(code_dim=model["code_dim"], num_speakers=int(num_speakers), hop_length=int(hop_length))
    return _construct(DECODERS[kind], kwargs, "model.decoder")


def build_vqvae(model_cfg: Mapping | DictConfig, num_speakers: int, frozen_units: bool = False) -> VQVAE:
    """The ``model`` config node and the number of training speakers -> a freshly initialised `VQVAE`.

    frozen_units: the encoder and quantizer will not be trained (a unit vocoder's VQ-VAE).
    """
    model = _plain(model_cfg, "model")
    for key in ("num_codes", "code_dim"):
        if key not in model:
            raise SpeechVQError(f"config model.{key} is missing")
    quantizer = build_quantizer(model)
    if int(quantizer.num_codes) != int(model["num_codes"]) or int(quantizer.dim) != int(model["code_dim"]):
        raise SpeechVQError(
            f"config model.quantizer (num_codes={quantizer.num_codes}, dim={quantizer.dim}) disagrees with "
            f"model.num_codes={model['num_codes']}, model.code_dim={model['code_dim']}"
        )
    encoder = build_encoder(model)
    return _construct(VQVAE, dict(
        encoder=encoder, quantizer=quantizer,
        decoder=build_decoder(model, num_speakers, hop_length=encoder.hop_length),
        jitter=float(model.get("jitter", 0.0)), speaker_adversary=float(model.get("speaker_adversary", 0.0)),
        num_speakers=int(num_speakers), voice_shift=float(model.get("voice_shift", 0.0)),
        frozen_units=frozen_units,
    ), "model")


def build_prior(prior_cfg: Mapping | DictConfig, num_codes: int, num_speakers: int) -> Prior:
    """The ``prior`` config node (``configs/prior/*.yaml``), codebook size K and number of speakers -> `Prior`.

    ``speaker_conditioning: false`` builds an unconditional prior whatever `num_speakers` is;
    the other keys (dim, layers, heads, max_len, dropout, zero_init_output) are passed on.
    """
    kwargs = _plain(prior_cfg, "prior")
    conditioned = bool(kwargs.pop("speaker_conditioning", True))
    kwargs.update(num_codes=int(num_codes), num_speakers=int(num_speakers) if conditioned else 0)
    return _construct(Prior, kwargs, "prior")  # ValueError (e.g. dim not a multiple of 2 * heads) -> SpeechVQError
