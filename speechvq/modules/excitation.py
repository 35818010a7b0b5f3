"""Source signal of the source-filter decoder: harmonics at F0 and noise (Wang et al. 2019, NSF).

A frame-rate F0 track becomes a sample-rate excitation whose phase is continuous across
frames: the instantaneous frequency is the track linearly interpolated between frame centres,
and the phase is its running sum, phi[t] = phi0 + 2 pi sum_{s <= t} f0[s] / sample_rate. The
filter network (`speechvq.models.source_filter`) shapes it into speech.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def upsample_f0(f0: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-rate F0 (B, F) hertz, 0 = unvoiced -> (sample-rate F0 (B, F*hop), voiced mask (B, F*hop)).

    Voiced stretches are interpolated linearly between frame centres (each unvoiced neighbour
    replaced by the nearest voiced value, so a stretch never glides towards 0 Hz); the mask is
    the frame's voicing repeated hop times.
    """
    voiced = f0 > 0
    # fill unvoiced frames with the previous voiced value (then the next, at the start) for interpolation
    frames = f0.shape[-1]
    index = torch.arange(frames, device=f0.device).expand_as(f0)
    last_voiced = torch.where(voiced, index, torch.zeros_like(index)).cummax(dim=-1).values
    filled = torch.gather(f0, -1, last_voiced)
    first = torch.where(voiced.any(-1), voiced.float().argmax(-1), torch.zeros(f0.shape[0], dtype=torch.long,
                                                                             device=f0.device))
    before_first = index < first[:, None]
    filled = torch.where(before_first, torch.gather(f0, -1, first[:, None]).expand_as(f0), filled)
    smooth = F.interpolate(filled[:, None], scale_factor=hop, mode="linear", align_corners=False)[:, 0]
    mask = voiced.repeat_interleave(hop, dim=-1)
    return smooth * mask, mask


def excitation_phase(f0: torch.Tensor, hop: int, sample_rate: int,
                     initial_phase: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame-rate F0 (B, F) hertz -> (sample-rate F0 (B, F*hop) hertz, voiced mask (B, F*hop),
    phase of the fundamental (B, F*hop) radians, continuous across frames, from `initial_phase` (B,))."""
    if f0.dim() != 2:
        raise ValueError(f"f0 must have shape (B, F), got {tuple(f0.shape)}")
    sample_f0, mask = upsample_f0(f0.float(), hop)
    cycles = torch.cumsum(sample_f0.double() / sample_rate, dim=-1)
    phase = 2.0 * math.pi * torch.frac(cycles).float()
    if initial_phase is not None:
        phase = phase + initial_phase.float()[:, None]
    return sample_f0, mask, phase


def harmonic_excitation(
    f0: torch.Tensor,
    hop: int,
    sample_rate: int,
    harmonics: int = 8,
    initial_phase: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frame-rate F0 (B, F) in hertz (0: unvoiced) -> excitation (B, harmonics + 1, F * hop).

    Channels 0..harmonics-1: sin(k phi) for k = 1..harmonics in voiced samples, 0 in unvoiced
    samples and where k * F0 is above the Nyquist frequency. Last channel: standard normal noise
    everywhere (the filter decides where to use it). `initial_phase` (B,) radians, default 0;
    `generator` seeds the noise.
    """
    sample_f0, mask, phase = excitation_phase(f0, hop, sample_rate, initial_phase)
    k = torch.arange(1, harmonics + 1, device=f0.device, dtype=torch.float32)[None, :, None]
    below_nyquist = (k * sample_f0[:, None]) < (sample_rate / 2)
    sines = torch.sin(k * phase[:, None]) * (mask[:, None] & below_nyquist)
    noise = torch.randn(f0.shape[0], 1, sample_f0.shape[-1], generator=generator, device=f0.device)
    return torch.cat([sines, noise], dim=1)
