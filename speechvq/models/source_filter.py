"""Source-filter WaveNet decoder: codes + speaker + F0 -> waveform in one forward pass.

A non-autoregressive neural source-filter model (Wang et al. 2019, NSF) trained with a
multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN)::

    f0 (B, F) Hz --harmonic_excitation--> (B, H+1, 64 F): sin(k phi), k = 1..H, and noise
      --1x1--> (B, R, 64 F) --non-causal WaveNet (gated, kernel 3, dilations 1..2**(L-1)),
         local conditioning z_q (B, D, F) -> conv stack -> x64, global = speaker embedding--> (B, 1, 64 F)

The excitation gives the output its pitch; the codes and the speaker shape the spectrum.
With ``envelope_harmonics > 0`` a frame-rate head (DDSP, Engel et al. 2020) also predicts, from
the conditioning stack and the speaker, the amplitude of each harmonic and a noise filter; their
harmonic-plus-noise synthesis is one more input channel of the WaveNet and is added to its
output, so the spectral envelope is set at frame rate and the WaveNet learns the residual::

    (z_q stack, speaker) --HarmonicNoiseHead--> sum_k a_k sin(k phi) + filtered noise = e (B, 64 F)
    output = e + WaveNet([excitation, e])

With ``mel_head_bands > 0`` a frame-rate acoustic model (`MelHead`) predicts the target's log-mel
envelope from the conditioning stack, the speaker and F0, trained with an L1 term; its prediction
is part of the WaveNet's local conditioning, so the envelope is supervised directly instead of
only through the waveform's STFT loss::

    (z_q stack, speaker, F0) --MelHead--> log-mel (B, M, F); local conditioning = [z_q stack, log-mel]

With ``envelope_filter_bins > 0`` a frame-rate head on the conditioning stack and the speaker
predicts a log-gain per frequency bin and frame, and the WaveNet's output goes through that
time-varying zero-phase filter (`stft_filter`; the head starts at gain 1), so the spectral
envelope — the phone's formants and the speaker's average timbre — has a direct multiplicative
knob instead of only the WaveNet's gates::

    output = iSTFT(exp(g(z_q stack, speaker)) * STFT(WaveNet(...)))

(``envelope_filter_codes=False``: g hears the speaker alone, a fixed equaliser per speaker.)

With ``average_spectrum_weight > 0`` the loss also compares each segment's long-term average
log-mel spectrum with the target's (`LogMelLoss.average`): the frame-wise STFT terms do not
compare the average over a segment, which can stay darker or brighter than the speaker's, and
the average spectrum is what a listener, or a speaker encoder, hears as the timbre.

With ``adversarial_weight > 0`` training adds HiFi-GAN's least-squares adversarial and
feature-matching terms against a multi-period/multi-scale discriminator
(`speechvq.modules.discriminator`), which lives in the decoder and learns in the same backward
pass (its own term on a detached output; the decoder's terms through detached judges). The
discriminator only trains; generation never runs it.

With ``speaker_judge_weight > 0`` a speaker classifier (`speechvq.modules.speaker_judge`) learns
the training speakers from the real segments, and training asks it, through frozen parameters,
to name the own speaker in the reconstruction and the target in a conversion: the same codes
rendered with a random other speaker's embedding, at the source's contour moved to that
speaker's mean log-F0 (a running mean of the training segments, kept in buffers). The STFT loss
never sees a conversion; this term is the only one that asks a conversion to sound like its
target. It only trains; generation never runs the judge.

A small F0 predictor (its own conv stack on the detached code vectors and its own speaker
embedding, so it never changes what the codes learn) gives a contour when none is known, for
`decode` from codes and for prior samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechvq.errors import SpeechVQError
from speechvq.modules.conv import ResStack1d
from speechvq.modules.discriminator import (
    MultiDiscriminator,
    adversarial_loss,
    discriminator_loss,
    feature_matching_loss,
    judge_frozen,
)
from speechvq.modules.excitation import harmonic_excitation
from speechvq.modules.harmonic_noise import HarmonicNoiseHead, filtered_noise, harmonic_synth, stft_filter
from speechvq.modules.mel_head import FrameLogMel, MelHead
from speechvq.modules.speaker_judge import SpeakerJudge, centre_log_f0
from speechvq.modules.stft_loss import LogMelLoss, MultiResolutionSTFTLoss
from speechvq.modules.wavenet import WaveNet


class SourceFilterDecoder(nn.Module):
    """Non-autoregressive decoder x = f(excitation(F0), z_q, speaker).

    Args:
        code_dim: D, channels of the code vectors z_q.
        num_speakers: rows of the speaker embeddings.
        speaker_dim: channels of the speaker embedding (global conditioning).
        cond_channels: channels of the frame-rate conditioning stack.
        cond_layers: convolutions of that stack (one 3-wide input convolution + cond_layers - 1 blocks).
        residual_channels, gate_channels, skip_channels: the WaveNet's widths (R, G, S).
        layers, stacks: WaveNet layers and dilation cycles (dilations 1..2**(layers/stacks - 1)).
        kernel_size: odd width of the non-causal dilated convolutions.
        harmonics: H, sinusoids in the excitation.
        hop_length: samples per code frame (64).
        sample_rate: hertz (16000).
        f0_loss_weight: weight of the F0 predictor's loss in `loss`.
        envelope_harmonics: K, harmonics whose amplitudes the frame-rate head predicts (0: no head).
        envelope_noise_bins: N, bins of its noise filter (n_fft = 2 (N - 1)).
        envelope_channels: width of its hidden convolutions.
        mel_loss_weight: weight of a log-mel L1 term in `loss` (0: the STFT loss alone).
        average_spectrum_weight: weight of an L1 term between the log long-term average mel spectra
            of output and target in `loss` (`LogMelLoss.average`; 0: none).
        mel_head_bands: M, log-mel bands that a frame-rate acoustic model predicts and the WaveNet is
            conditioned on (0: no head).
        mel_head_weight: weight of its L1 term in `loss`.
        envelope_filter_bins: N, frequency bins of the envelope filter on the output (n_fft = 2 (N - 1);
            0: no filter).
        envelope_filter_codes: the filter hears the codes and the speaker (a per-frame envelope);
            False: the speaker only (one fixed equaliser per speaker, no timbre from the codes).
        adversarial_weight: weight of the adversarial term in `loss` (0: no discriminator).
        feature_matching_weight: weight of the feature-matching term (with a discriminator).
        discriminator_channels: base width of the discriminator's judges (a multiple of 4).
        speaker_judge_weight: weight of the speaker judge's terms on the outputs in `loss` (0: no judge).
        speaker_judge_channels: width of the judge's convolutions.
    """

    autoregressive = False

    def __init__(
        self,
        code_dim: int = 64,
        num_speakers: int = 1,
        speaker_dim: int = 16,
        cond_channels: int = 32,
        cond_layers: int = 2,
        residual_channels: int = 32,
        gate_channels: int = 64,
        skip_channels: int = 32,
        layers: int = 10,
        stacks: int = 1,
        kernel_size: int = 3,
        harmonics: int = 8,
        hop_length: int = 64,
        sample_rate: int = 16000,
        f0_loss_weight: float = 1.0,
        envelope_harmonics: int = 0,
        envelope_noise_bins: int = 65,
        envelope_channels: int = 64,
        mel_loss_weight: float = 0.0,
        average_spectrum_weight: float = 0.0,
        mel_head_bands: int = 0,
        mel_head_weight: float = 1.0,
        envelope_filter_bins: int = 0,
        envelope_filter_codes: bool = True,
        adversarial_weight: float = 0.0,
        feature_matching_weight: float = 2.0,
        discriminator_channels: int = 16,
        speaker_judge_weight: float = 0.0,
        speaker_judge_channels: int = 128,
    ) -> None:
        super().__init__()
        if num_speakers < 1 or speaker_dim < 1:
            raise SpeechVQError(
                f"decoder needs num_speakers >= 1 and speaker_dim >= 1, got {num_speakers} and {speaker_dim}")
        if cond_layers < 1 or harmonics < 1:
            raise SpeechVQError(f"decoder cond_layers and harmonics must be >= 1, got {cond_layers}, {harmonics}")
        if kernel_size % 2 != 1:
            raise SpeechVQError(f"source-filter decoder kernel_size must be odd, got {kernel_size}")
        self.hop_length = int(hop_length)
        self.sample_rate = int(sample_rate)
        self.num_speakers = int(num_speakers)
        self.harmonics = int(harmonics)
        self.f0_loss_weight = float(f0_loss_weight)
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim)
        self.cond_in = nn.Conv1d(code_dim, cond_channels, 3, padding=1)
        self.cond_stack = ResStack1d(cond_channels, cond_channels, cond_layers - 1)
        if envelope_harmonics < 0:
            raise SpeechVQError(f"decoder envelope_harmonics must be >= 0, got {envelope_harmonics}")
        self.envelope = None
        if envelope_harmonics > 0:
            try:
                self.envelope = HarmonicNoiseHead(cond_channels + speaker_dim, envelope_channels, envelope_harmonics,
                                                  envelope_noise_bins)
            except ValueError as exc:
                raise SpeechVQError(f"decoder: {exc}") from None
        if mel_head_bands < 0:
            raise SpeechVQError(f"decoder mel_head_bands must be >= 0, got {mel_head_bands}")
        self.mel_head = MelHead(cond_channels, speaker_dim, cond_channels, mel_head_bands) if mel_head_bands else None
        self.mel_head_weight = float(mel_head_weight)
        self.frame_mel = FrameLogMel(sample_rate, hop_length, mel_head_bands) if mel_head_bands else None
        self.source_in = nn.Conv1d(harmonics + 1 + (self.envelope is not None), residual_channels, 1)
        try:
            self.wavenet = WaveNet(
                residual_channels, gate_channels, skip_channels, 1, layers, stacks,
                local_channels=cond_channels + mel_head_bands, global_channels=speaker_dim, kernel_size=kernel_size,
                causal=False,
            )
        except ValueError as exc:
            raise SpeechVQError(f"decoder: {exc}") from None
        self.f0_speaker = nn.Embedding(num_speakers, speaker_dim)
        self.f0_net = nn.Sequential(
            nn.Conv1d(code_dim + speaker_dim, cond_channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(cond_channels, cond_channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(cond_channels, 2, 1),
        )
        self.stft_loss = MultiResolutionSTFTLoss()
        self.mel_loss_weight = float(mel_loss_weight)
        self.mel_loss = LogMelLoss(sample_rate) if self.mel_loss_weight > 0 else None
        if average_spectrum_weight < 0:
            raise SpeechVQError(f"decoder average_spectrum_weight must be >= 0, got {average_spectrum_weight}")
        self.average_spectrum_weight = float(average_spectrum_weight)
        self.average_spectrum_loss = LogMelLoss(sample_rate) if self.average_spectrum_weight > 0 else None
        # created after every other module, so that the others start as without it
        if envelope_filter_bins < 0 or (envelope_filter_bins and 2 * (envelope_filter_bins - 1) < 2 * hop_length):
            raise SpeechVQError(f"decoder envelope_filter_bins must be 0 or at least {hop_length + 1} "
                                f"(n_fft = 2 (N - 1) >= 2 x hop), got {envelope_filter_bins}")
        self.envelope_filter = None
        self.envelope_filter_codes = bool(envelope_filter_codes)
        if envelope_filter_bins:
            self.envelope_filter = nn.Sequential(
                nn.Conv1d(cond_channels * bool(envelope_filter_codes) + speaker_dim, cond_channels, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv1d(cond_channels, envelope_filter_bins, 1),
            )
            nn.init.zeros_(self.envelope_filter[-1].weight)  # log-gain 0: the filter starts as the identity
            nn.init.zeros_(self.envelope_filter[-1].bias)
        if adversarial_weight < 0 or feature_matching_weight < 0:
            raise SpeechVQError(f"decoder adversarial_weight and feature_matching_weight must be >= 0, got "
                                f"{adversarial_weight}, {feature_matching_weight}")
        self.adversarial_weight = float(adversarial_weight)
        self.feature_matching_weight = float(feature_matching_weight)
        self.discriminator = None
        if self.adversarial_weight > 0:
            try:
                self.discriminator = MultiDiscriminator(int(discriminator_channels))
            except ValueError as exc:
                raise SpeechVQError(f"decoder discriminator_channels: {exc}") from None
        if speaker_judge_weight < 0:
            raise SpeechVQError(f"decoder speaker_judge_weight must be >= 0, got {speaker_judge_weight}")
        self.speaker_judge_weight = float(speaker_judge_weight)
        self.speaker_judge = None
        if self.speaker_judge_weight > 0:
            try:
                self.speaker_judge = SpeakerJudge(num_speakers, int(speaker_judge_channels), sample_rate=sample_rate)
            except ValueError as exc:
                raise SpeechVQError(f"decoder speaker_judge_channels: {exc}") from None
            # per speaker: the sum and number of the training segments' mean log-F0 (log-hertz)
            self.register_buffer("speaker_log_f0_sum", torch.zeros(num_speakers))
            self.register_buffer("speaker_log_f0_count", torch.zeros(num_speakers))

    def _check_speaker(self, speaker: torch.Tensor, batch: int) -> None:
        if speaker.dim() != 1 or speaker.shape[0] != batch:
            raise SpeechVQError(f"speaker must have shape ({batch},), got {tuple(speaker.shape)}")

    def forward(self, z_q: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor,
                generator: torch.Generator | None = None, initial_phase: torch.Tensor | None = None) -> torch.Tensor:
        """Generate audio.

        Args:
            z_q: (B, D, F) code vectors.
            speaker: (B,) int64 speaker indices.
            f0: (B, F) float hertz, 0 where unvoiced.
            generator: seeds the excitation noise; initial_phase: (B,) radians (default 0).
        Returns:
            (B, hop_length * F) float waveform.
        """
        return self._generate(z_q, speaker, f0, generator, initial_phase)[0]

    def _generate(self, z_q: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor,
                  generator: torch.Generator | None, initial_phase: torch.Tensor | None,
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`'s waveform (B, 64 F) and the head's log-mel (B, M, F) (None without a head)."""
        self._check_speaker(speaker, z_q.shape[0])
        if f0.shape != (z_q.shape[0], z_q.shape[-1]):
            raise SpeechVQError(f"f0 must have shape {(z_q.shape[0], z_q.shape[-1])}, got {tuple(f0.shape)}")
        source = harmonic_excitation(f0, self.hop_length, self.sample_rate, self.harmonics,
                                     initial_phase=initial_phase, generator=generator)
        local = self.cond_stack(self.cond_in(z_q))
        voice = self.speaker_embedding(speaker)
        mel = None if self.mel_head is None else self.mel_head(local, voice, f0)
        conditioning = local if mel is None else torch.cat([local, mel], dim=1)
        speaker_frames = voice[:, :, None].expand(-1, -1, local.shape[-1])  # (B, S, F), a view
        if self.envelope is None:
            wav = self.wavenet(self.source_in(source), conditioning, voice, self.hop_length)[:, 0]
        else:
            amplitudes, noise = self.envelope(torch.cat([local, speaker_frames], 1))
            envelope = (harmonic_synth(f0, amplitudes, self.hop_length, self.sample_rate, initial_phase)
                        + filtered_noise(noise, self.hop_length, generator))
            source = torch.cat([source, envelope[:, None]], dim=1)
            wav = envelope + self.wavenet(self.source_in(source), conditioning, voice, self.hop_length)[:, 0]
        if self.envelope_filter is not None:
            heard = torch.cat([local, speaker_frames], 1) if self.envelope_filter_codes else speaker_frames
            log_gain = self.envelope_filter(heard).clamp(-10.0, 5.0)
            wav = stft_filter(wav, log_gain.exp(), self.hop_length)
        return wav, mel

    def f0_outputs(self, z_q: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log F0 in log-hertz (B, F), voicing logit (B, F)) predicted from detached z_q and the speaker."""
        self._check_speaker(speaker, z_q.shape[0])
        spk = self.f0_speaker(speaker)[:, :, None].expand(-1, -1, z_q.shape[-1])
        out = self.f0_net(torch.cat([z_q.detach(), spk], dim=1))
        return out[:, 0] + 5.0, out[:, 1]  # 5.0: log(148 Hz), a neutral starting point

    @torch.no_grad()
    def predict_f0(self, z_q: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """(B, D, F) code vectors, (B,) speakers -> (B, F) F0 in hertz, 0 where predicted unvoiced."""
        log_f0, logit = self.f0_outputs(z_q, speaker)
        return torch.where(logit > 0, log_f0.exp(), torch.zeros_like(log_f0))

    def loss(self, wav: torch.Tensor, z_q: torch.Tensor, speaker: torch.Tensor,
             f0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training terms for target wav (B, T), T <= 64 F, with its F0 (B, F) hertz.

        Returns scalars: ``stft_convergence``, ``stft_log_magnitude``, ``f0_loss`` (L1 of log F0
        on voiced frames + voicing cross-entropy), ``mel_l1`` when ``mel_loss_weight > 0``,
        ``average_spectrum_l1`` when ``average_spectrum_weight > 0``,
        ``mel_head_l1`` (the head's L1 to the target's normalised log-mel) with a head,
        ``discriminator``, ``adversarial`` and ``feature_matching`` with a discriminator in
        training mode, the speaker judge's terms with a judge in training mode (`_speaker_terms`),
        and ``loss`` (their sum, the F0, mel and generator terms weighted).
        A random initial phase per item keeps the filter from memorising one.
        """
        phase = torch.rand(wav.shape[0], device=wav.device) * (2 * torch.pi)
        estimate, mel = self._generate(z_q, speaker, f0, None, phase)
        estimate = estimate[:, : wav.shape[-1]]
        convergence, log_magnitude = self.stft_loss(estimate, wav)
        log_f0, logit = self.f0_outputs(z_q, speaker)
        voiced = f0 > 0
        f0_l1 = ((log_f0 - f0.clamp(min=1.0).log()).abs() * voiced).sum() / voiced.sum().clamp(min=1)
        f0_loss = f0_l1 + F.binary_cross_entropy_with_logits(logit, voiced.float())
        terms = {"stft_convergence": convergence, "stft_log_magnitude": log_magnitude, "f0_loss": f0_loss}
        total = convergence + log_magnitude + self.f0_loss_weight * f0_loss
        if self.mel_loss is not None:
            terms["mel_l1"] = self.mel_loss(estimate, wav)
            total = total + self.mel_loss_weight * terms["mel_l1"]
        if self.average_spectrum_loss is not None:
            terms["average_spectrum_l1"] = self.average_spectrum_loss.average(estimate, wav)
            total = total + self.average_spectrum_weight * terms["average_spectrum_l1"]
        if mel is not None:
            frames = math.ceil(wav.shape[-1] / self.hop_length)
            terms["mel_head_l1"] = (mel[..., :frames] - self.frame_mel(wav)).abs().mean()
            total = total + self.mel_head_weight * terms["mel_head_l1"]
        if self.discriminator is not None and self.training:
            real, fake = wav[:, None], estimate[:, None]
            judged_real = self.discriminator(real)
            terms["discriminator"] = discriminator_loss(judged_real, self.discriminator(fake.detach()))
            judged_fake = judge_frozen(self.discriminator, fake)
            terms["adversarial"] = adversarial_loss(judged_fake)
            terms["feature_matching"] = feature_matching_loss(judged_real, judged_fake)
            total = (total + terms["discriminator"] + self.adversarial_weight * terms["adversarial"]
                     + self.feature_matching_weight * terms["feature_matching"])
        if self.speaker_judge is not None and self.training:
            total = total + self._speaker_terms(terms, wav, estimate, z_q, speaker, f0, phase)
        return {**terms, "loss": total}

    def _speaker_terms(self, terms: dict[str, torch.Tensor], wav: torch.Tensor, estimate: torch.Tensor,
                       z_q: torch.Tensor, speaker: torch.Tensor, f0: torch.Tensor,
                       phase: torch.Tensor) -> torch.Tensor:
        """The speaker judge's terms for target wav (B, T) and its reconstruction (B, T); returns their sum.

        Adds to `terms`: ``speaker_own`` (the reconstructions judged against their speaker);
        with more than one speaker, ``speaker_converted`` (each item's codes
        rendered with a random other speaker's embedding and mean log-F0, judged against that
        speaker) and ``speaker_converted_accuracy``; and ``speaker_judge``, the judge's
        cross-entropy on the real segments, the only term that trains it. The output terms go
        through the frozen judge and are weighted by ``speaker_judge_weight``. Updates the
        running log-F0 means first.
        """
        judge = self.speaker_judge
        with torch.no_grad():
            voiced = f0 > 0
            frames = voiced.sum(-1)
            segment_mean = (f0.clamp(min=1e-3).log() * voiced).sum(-1) / frames.clamp(min=1)
            self.speaker_log_f0_sum.index_add_(0, speaker, segment_mean * (frames > 0))
            self.speaker_log_f0_count.index_add_(0, speaker, (frames > 0).float())
        terms["speaker_own"] = F.cross_entropy(judge_frozen(judge, estimate), speaker)
        generator = terms["speaker_own"]
        if self.num_speakers > 1:
            offset = torch.randint(1, self.num_speakers, speaker.shape, device=speaker.device)
            target = (speaker + offset) % self.num_speakers
            count = self.speaker_log_f0_count[target]
            contour = torch.where((count > 0)[:, None],
                                  centre_log_f0(f0, self.speaker_log_f0_sum[target] / count.clamp(min=1)), f0)
            converted = self._generate(z_q, target, contour, None, phase)[0][:, : wav.shape[-1]]
            logits = judge_frozen(judge, converted)
            terms["speaker_converted"] = F.cross_entropy(logits, target)
            terms["speaker_converted_accuracy"] = (logits.argmax(-1) == target).float().mean()
            generator = generator + terms["speaker_converted"]
        terms["speaker_judge"] = F.cross_entropy(judge(wav), speaker)
        return terms["speaker_judge"] + self.speaker_judge_weight * generator
