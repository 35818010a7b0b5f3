"""Fast batched autoregressive generation with the WaveNet decoder.

`generate` turns code vectors and speakers into audio for many utterances at once (different
lengths and speakers in one batch). Each new sample costs one cached step of every WaveNet layer
(`speechvq.modules.wavenet` steppers); the conditioning of all layers is computed once per code
frame. Streams that have finished are dropped from the batch at a frame boundary: at once by the
eager engines (cheap), but by the CUDA-graph engine only once at most half the batch is still
active (`should_compact`), because every change of batch means capturing a new graph; until then
finished streams keep stepping and their outputs are ignored.

Randomness: sampling is a deterministic function of uniform noise drawn frame by frame from one
`torch.Generator` seeded with `seed`, for the active streams only, so the same seed, inputs and
batch give the same audio whichever engine runs and whenever it compacts its batch.

Engines: on the CPU with the μ-law output, a NumPy loop (lowest per-step overhead); otherwise a
torch loop whose step is captured as a CUDA graph on CUDA devices (`use_cuda_graph`), so that
small batches are not bound by kernel launches.

Memory: the state is the per-layer queues (receptive field x batch x residual channels), the
frame-rate conditioning (B, Cc, F), the size of the codes, and the output audio itself; no
sample-rate conditioning is ever materialised.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from speechvq.errors import SpeechVQError
from speechvq.models.decoder import Decoder
from speechvq.modules.output import NOISE_EPS


def should_compact(live: np.ndarray, min_live_fraction: float) -> bool:
    """Whether to drop the finished streams now, given the engine's rows' `live` (bool) mask.

    min_live_fraction: compact once the live rows are at most this fraction of the rows; 1.0
    compacts as soon as any stream has finished (eager engines: compaction is cheap), 0.5 waits
    until half the batch has finished (the CUDA-graph engine: each compaction re-captures the
    graph, so at most log2(B) captures per batch instead of up to B - 1). Never when all rows
    are live or none is (nothing to do, or generation is over).
    """
    live = np.asarray(live, dtype=bool)
    count = int(live.sum())
    if count == 0 or count == live.size:
        return False
    return count <= min_live_fraction * live.size


class _NumpyMuLawEngine:
    """CPU engine for the μ-law output: NumPy stepper, Gumbel-max sampling, embedding lookup."""

    min_live_fraction = 1.0  # re-planning the NumPy stepper is cheap: drop finished streams at once

    def __init__(self, decoder: Decoder, local: torch.Tensor, global_: torch.Tensor, temperature: float,
                 argmax: bool) -> None:
        batch = global_.shape[0]
        # Per-frame work stays in NumPy too: torch's intra-op threads would spin between frames
        # and compete with this loop for the cores.
        self.local = local.float().numpy()  # (B, Cc, F)
        self.stepper = decoder.stepper(batch, backend="numpy")
        self.stepper.set_global(global_.float().numpy())
        self.table = np.ascontiguousarray(decoder.input_embedding.weight.detach().float().numpy())
        self.temperature = temperature
        self.argmax = argmax or temperature == 0
        self.hop = decoder.hop_length
        silence = int(decoder.output.encode_input(torch.zeros(1, 1))[0, 0])
        self.x0 = np.repeat(self.table[silence:silence + 1], batch, axis=0)
        self.symbols = np.zeros((self.hop, batch), dtype=np.int64)

    def select(self, rows: np.ndarray) -> None:
        self.stepper.select(rows)
        self.local = self.local[rows]
        self.x0 = np.ascontiguousarray(self.x0[rows])
        self.symbols = np.zeros((self.hop, len(rows)), dtype=np.int64)

    def run_frame(self, frame: int, noise: torch.Tensor) -> torch.Tensor:
        """Samples of frame `frame`; noise (n, B, 256) uniform in (0, 1) -> symbols (n, B) int64."""
        n = noise.shape[0]
        self.stepper.set_local(np.ascontiguousarray(self.local[:, :, frame]))
        gumbel = None
        if not self.argmax:
            u = np.clip(noise.numpy(), NOISE_EPS, 1.0 - NOISE_EPS)
            gumbel = -np.log(-np.log(u)) * np.float32(self.temperature)  # Gumbel-max: argmax(logits + T g)
        step, x0, table, symbols = self.stepper.step, self.x0, self.table, self.symbols
        for i in range(n):
            logits = step(x0)
            if gumbel is not None:
                np.add(logits, gumbel[i], out=logits)
            logits.argmax(axis=1, out=symbols[i])  # array methods skip NumPy's Python-level dispatch
            table.take(symbols[i], axis=0, out=x0)
        return torch.from_numpy(symbols[:n].copy())


class _TorchEngine:
    """Any-device engine: torch stepper + the output's noise-driven sampler, optionally as a CUDA graph."""

    def __init__(self, decoder: Decoder, local: torch.Tensor, global_: torch.Tensor, temperature: float,
                 argmax: bool, use_cuda_graph: bool) -> None:
        batch = global_.shape[0]
        self.local = local  # (B, Cc, F)
        self.decoder = decoder
        self.device = global_.device
        self.stepper = decoder.stepper(batch, backend="torch")
        self.stepper.set_global(global_)
        self.temperature = temperature
        self.argmax = argmax
        self.hop = decoder.hop_length
        self.use_cuda_graph = use_cuda_graph
        # A new batch means a new graph capture: let finished streams run on until half are done.
        self.min_live_fraction = 0.5 if use_cuda_graph else 1.0
        self.graph: torch.cuda.CUDAGraph | None = None
        first = decoder.output.encode_input(torch.zeros(batch, 1, device=self.device))[:, 0]
        self._allocate(first)

    def _allocate(self, previous: torch.Tensor) -> None:
        batch = previous.shape[0]
        out = self.decoder.output
        self.previous = previous.clone()  # (B,) symbols of the previous sample
        self.noise = torch.zeros(self.hop, batch, out.noise_size, device=self.device)
        self.symbols = torch.zeros(self.hop, batch, dtype=previous.dtype, device=self.device)
        self.index = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.graph = None

    def select(self, rows: np.ndarray) -> None:
        index = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        self.stepper.select(index)
        self.local = self.local.index_select(0, index)
        self._allocate(self.previous.index_select(0, index))

    def _step(self) -> None:
        """One sample for every stream; reads and writes only static buffers (graph-capturable)."""
        torch.remainder(self.stepper.t, self.hop, out=self.index)
        params = self.stepper.step(self.decoder.embed_symbols(self.previous))
        noise = self.noise.index_select(0, self.index)[0]
        symbols = self.decoder.output.sample_symbols(params, noise, self.temperature, self.argmax)
        self.symbols.index_copy_(0, self.index, symbols.unsqueeze(0))
        self.previous.copy_(symbols)

    def _capture(self) -> None:
        """Record `_step` as a CUDA graph; the warm-up steps' effects on the state are undone."""
        state = [*self.stepper.state(), self.previous, self.symbols]
        saved = [t.clone() for t in state]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        for t, s in zip(state, saved):
            t.copy_(s)
        self.graph = graph

    def run_frame(self, frame: int, noise: torch.Tensor) -> torch.Tensor:
        """Samples of frame `frame`; noise (n, B, N) uniform in (0, 1) -> symbols (n, B) on the CPU."""
        n = noise.shape[0]
        self.stepper.set_local(self.local[:, :, frame])
        self.noise[:n].copy_(noise)
        if self.use_cuda_graph:
            if self.graph is None:
                self._capture()
            for _ in range(n):
                self.graph.replay()
        else:
            for _ in range(n):
                self._step()
        return self.symbols[:n].cpu()


def _check_inputs(decoder: Decoder, z_q: torch.Tensor, speaker: torch.Tensor, lengths) -> list[int]:
    if z_q.dim() != 3:
        raise SpeechVQError(f"generate: z_q must have shape (B, D, F), got {tuple(z_q.shape)}")
    batch, _, frames = z_q.shape
    lengths = [int(n) for n in (lengths.tolist() if torch.is_tensor(lengths) else lengths)]
    if len(lengths) != batch or tuple(speaker.shape) != (batch,):
        raise SpeechVQError(f"generate: z_q has {batch} utterances but lengths has {len(lengths)} "
                            f"and speaker has shape {tuple(speaker.shape)}")
    for n in lengths:
        if not 1 <= n <= frames * decoder.hop_length:
            raise SpeechVQError(f"generate: length {n} samples is outside 1..{frames * decoder.hop_length} "
                                f"({frames} frames of {decoder.hop_length} samples)")
    return lengths


def _conditioning(decoder: Decoder, z_q: torch.Tensor, speaker: torch.Tensor,
                  lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-rate conditioning (B, Cc, F) and speaker vectors (B, Cg), each utterance on its own frames.

    The conditioning stack is non-causal over frames, so an utterance's last frames would see the
    padding of longer ones if the batch went through it at once; per utterance, the result does
    not depend on the batch.
    """
    hop = decoder.hop_length
    parts = [decoder.conditioning(z_q[b:b + 1, :, :-(-n // hop)], speaker[b:b + 1]) for b, n in enumerate(lengths)]
    local = z_q.new_zeros(len(lengths), parts[0][0].shape[1], z_q.shape[-1])
    for b, (frames, _) in enumerate(parts):
        local[b, :, :frames.shape[-1]] = frames[0]
    return local, torch.cat([g for _, g in parts])


@torch.no_grad()
def generate(
    decoder: Decoder,
    z_q: torch.Tensor,
    speaker: torch.Tensor,
    lengths,
    temperature: float = 1.0,
    argmax: bool = False,
    seed: int | None = None,
    progress: bool = True,
    use_cuda_graph: bool | None = None,
) -> list[np.ndarray]:
    """Generate audio from code vectors and speakers, many utterances in one batch.

    Args:
        decoder: the (eval-mode) WaveNet decoder.
        z_q: (B, D, F) code vectors on the decoder's device; utterance b uses its first
            ceil(lengths[b] / hop) frames.
        speaker: (B,) int64 speaker indices.
        lengths: (B,) ints, samples to generate per utterance (1 <= n <= F * hop).
        temperature: sampling temperature (>= 0; 0 means argmax).
        argmax: take the most probable value instead of sampling.
        seed: seed of the noise generator; None draws a fresh seed.
        progress: show a tqdm bar counting generated samples.
        use_cuda_graph: capture the per-sample step as a CUDA graph; None: when on CUDA.
    Returns:
        B float32 arrays in [-1, 1], of lengths[b] samples each (16 kHz).
    """
    if temperature < 0:
        raise SpeechVQError(f"generate: temperature must be >= 0, got {temperature}")
    lengths = _check_inputs(decoder, z_q, speaker, lengths)
    if not lengths:
        return []
    device = decoder.wavenet.skip_bias.device
    if use_cuda_graph is None:
        use_cuda_graph = device.type == "cuda"
    if use_cuda_graph and device.type != "cuda":
        raise SpeechVQError("generate: use_cuda_graph=True needs the decoder on a CUDA device")
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    z_q, speaker = z_q.to(device), speaker.to(device)
    local, global_ = _conditioning(decoder, z_q, speaker, lengths)  # (B, Cc, F), (B, speaker_dim)
    output = decoder.output
    context = contextlib.nullcontext()
    if device.type == "cpu" and output.symbols_are_indices:
        engine = _NumpyMuLawEngine(decoder, local, global_, temperature, argmax)
        # The step's matrix products are far too small to split across threads; NumPy's BLAS pool
        # would only spin and contend with other processes.
        context = threadpool_limits(limits=1, user_api="blas")
    else:
        engine = _TorchEngine(decoder, local, global_, temperature, argmax or temperature == 0, use_cuda_graph)

    hop = decoder.hop_length
    audio = [np.zeros(n, dtype=np.float32) for n in lengths]
    with context, tqdm(total=sum(lengths), unit="sample", unit_scale=True, disable=not progress,
                       desc="generate") as bar:
        _generate_frames(engine, lengths, output, generator, bar, audio, hop, device)
    return audio


def _generate_frames(engine, lengths: list[int], output, generator: torch.Generator, bar: tqdm,
                     audio: list[np.ndarray], hop: int, device: torch.device) -> None:
    """Run `engine` frame by frame, writing into `audio` (one array per stream).

    `rows` maps the engine's batch rows to streams. Finished streams are dropped when
    `should_compact` says so; until then they keep stepping on noise that is not drawn from the
    generator (0.5), and their outputs are ignored. Each frame draws (n, live streams, N) noise,
    so a stream's audio does not depend on when the engine compacts.
    """
    lengths_np = np.asarray(lengths)
    rows = np.arange(len(lengths))
    start = 0
    while start < lengths_np.max():
        live = lengths_np[rows] > start
        if should_compact(live, engine.min_live_fraction):
            engine.select(np.flatnonzero(live))
            rows, live = rows[live], live[live]
        n = min(hop, int(lengths_np[rows].max()) - start)
        drawn = torch.rand(n, int(live.sum()), output.noise_size, generator=generator, device=device)
        if live.all():
            noise = drawn
        else:
            noise = torch.full((n, len(rows), output.noise_size), 0.5, device=device)
            noise[:, torch.as_tensor(np.flatnonzero(live), device=device)] = drawn
        chunk = output.symbols_to_audio(engine.run_frame(start // hop, noise)).numpy()  # (n, len(rows))
        done = 0
        for column, b in enumerate(rows):
            m = min(n, lengths[b] - start)
            if m > 0:
                audio[b][start:start + m] = chunk[:m, column]
                done += m
        bar.update(done)
        start += n
