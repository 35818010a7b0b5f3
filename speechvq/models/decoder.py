"""Speaker-conditioned WaveNet decoder of the VQ-VAE: codes + speaker -> distribution of each sample.

Conditioning (docs/architecture.md, "The model"):

- global: a learned speaker embedding, one vector per utterance;
- local: the quantised code vectors z_q (B, D, F), 250 frames per second, through a small
  non-causal conv stack at frame rate (the codes are known ahead), then nearest-neighbour
  upsampling x hop (64) and a 1x1 projection per layer (inside `WaveNet`).

The previous sample enters through the output distribution's symbols (μ-law bin or float value)
and a learned input embedding to the residual width.
"""

from __future__ import annotations

import torch
from torch import nn

from speechvq.errors import SpeechVQError
from speechvq.modules.conv import ResStack1d
from speechvq.modules.output import make_output
from speechvq.modules.wavenet import WaveNet
from speechvq.modules.wavenet_stepper import NumpyStepper, TorchStepper


class Decoder(nn.Module):
    """WaveNet decoder p(x_t | x_<t, codes, speaker).

    Args:
        code_dim: D, channels of the code vectors z_q.
        num_speakers: number of training speakers (rows of the speaker embedding).
        speaker_dim: channels of the speaker embedding (global conditioning).
        cond_channels: channels of the local conditioning after the frame-rate conv stack.
        residual_channels: R, WaveNet residual channels.
        gate_channels: G, output channels of each dilated convolution (gated unit has G/2).
        skip_channels: S, skip and output-head channels.
        layers: WaveNet layers; dilations 1..2**(layers/stacks - 1) per stack.
        stacks: dilation cycles.
        kernel_size: dilated convolution width; only 2 is supported (the cached generator's layout).
        output: "mulaw" (256-way softmax) or "mol" (mixture of logistics).
        mixtures: mixture components for output="mol".
        hop_length: samples per code frame (64).
        cond_layers: convolutions of the conditioning stack: one 3-wide input convolution plus
            cond_layers - 1 residual blocks.
    """

    autoregressive = True

    def __init__(
        self,
        code_dim: int = 64,
        num_speakers: int = 1,
        speaker_dim: int = 64,
        cond_channels: int = 64,
        residual_channels: int = 64,
        gate_channels: int = 128,
        skip_channels: int = 128,
        layers: int = 20,
        stacks: int = 2,
        kernel_size: int = 2,
        output: str = "mulaw",
        mixtures: int = 10,
        hop_length: int = 64,
        cond_layers: int = 2,
    ) -> None:
        super().__init__()
        if kernel_size != 2:
            raise SpeechVQError(f"decoder kernel_size={kernel_size} is not supported: the WaveNet uses kernel 2")
        if num_speakers < 1 or speaker_dim < 1:
            raise SpeechVQError(
                f"decoder needs num_speakers >= 1 and speaker_dim >= 1, got {num_speakers} and {speaker_dim}")
        if cond_layers < 1:
            raise SpeechVQError(f"decoder cond_layers must be >= 1, got {cond_layers}")
        self.hop_length = int(hop_length)
        self.num_speakers = num_speakers
        self.output_name = output
        self.output = make_output(output, mixtures)
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim)
        self.cond_in = nn.Conv1d(code_dim, cond_channels, 3, padding=1)
        self.cond_stack = ResStack1d(cond_channels, cond_channels, cond_layers - 1)
        if self.output.symbols_are_indices:
            self.input_embedding: nn.Module = nn.Embedding(self.output.channels, residual_channels)
        else:
            self.input_embedding = nn.Linear(1, residual_channels)
        self.wavenet = WaveNet(
            residual_channels, gate_channels, skip_channels, self.output.num_params, layers, stacks,
            local_channels=cond_channels, global_channels=speaker_dim,
        )

    @property
    def receptive_field(self) -> int:
        """Samples (including the current input) that one output depends on."""
        return self.wavenet.receptive_field

    def embed_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """Previous-sample symbols (B,) or (B, T) -> input embedding (B, R) or (B, R, T)."""
        if self.output.symbols_are_indices:
            x = self.input_embedding(symbols)
        else:
            x = self.input_embedding(symbols.float().unsqueeze(-1))
        return x if symbols.dim() == 1 else x.transpose(1, 2)

    def conditioning(self, z_q: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_q (B, D, F) code vectors, speaker (B,) int64 -> (local (B, Cc, F), global (B, speaker_dim)).

        Speaker indices outside the embedding are a SpeechVQError outside training mode (the check
        reads them on the host; a training step must not wait for the device: its indices come
        from the data pipeline, which knows only the training speakers).
        """
        if speaker.dim() != 1 or speaker.shape[0] != z_q.shape[0]:
            raise SpeechVQError(f"speaker must have shape ({z_q.shape[0]},), got {tuple(speaker.shape)}")
        if not self.training:
            # The range check reads the indices: on a GPU a training step would wait for the device,
            # so training relies on the data pipeline (SegmentDataset maps known speakers only).
            if speaker.numel() and (int(speaker.min()) < 0 or int(speaker.max()) >= self.num_speakers):
                raise SpeechVQError(f"speaker index out of range 0..{self.num_speakers - 1}: {speaker.tolist()}")
        return self.cond_stack(self.cond_in(z_q)), self.speaker_embedding(speaker)

    def forward(self, wav: torch.Tensor, z_q: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Teacher-forced output parameters.

        Args:
            wav: (B, T) float target audio in [-1, 1].
            z_q: (B, D, F) code vectors, F >= ceil(T / hop_length).
            speaker: (B,) int64 speaker indices.
        Returns:
            (B, C, T) parameters of the distribution of sample t given samples < t: the input is
            the audio shifted right by one sample, with silence as the first input.
        """
        if wav.dim() != 2:
            raise SpeechVQError(f"decoder expects wav of shape (B, T), got {tuple(wav.shape)}")
        symbols = self.output.encode_input(wav)
        first = self.output.encode_input(wav.new_zeros(wav.shape[0], 1))
        previous = torch.cat([first, symbols[:, :-1]], dim=1)
        local, global_ = self.conditioning(z_q, speaker)
        return self.wavenet(self.embed_symbols(previous), local, global_, self.hop_length)

    def nll(self, wav: torch.Tensor, z_q: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (B, T) in nats per sample of wav (B, T) given codes and speaker."""
        return self.output.nll(self(wav, z_q, speaker), wav)

    def stepper(self, batch_size: int, backend: str = "auto") -> NumpyStepper | TorchStepper:
        """Cached incremental evaluation of the WaveNet for `batch_size` streams.

        backend: "numpy" (CPU, fastest there), "torch" (any device, CUDA-graph capturable) or
        "auto" (numpy on CPU, torch elsewhere). The stepper works on input embeddings
        (`embed_symbols`) and conditioning from `conditioning`; see `speechvq.inference.generate`.
        """
        device = self.wavenet.skip_bias.device
        if backend == "auto":
            backend = "numpy" if device.type == "cpu" else "torch"
        if backend == "numpy":
            return NumpyStepper(self.wavenet, batch_size)
        if backend == "torch":
            return TorchStepper(self.wavenet, batch_size)
        raise ValueError(f"unknown stepper backend {backend!r}: expected 'auto', 'numpy' or 'torch'")
