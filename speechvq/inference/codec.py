"""The ``.svq`` file: an utterance's codes entropy-coded with the code prior (about 1 kbit/s).

The codes (250 per second, ints in [0, K)) are range-coded (`constriction`'s RangeEncoder)
with the prior's next-code distribution p(z_t | z_<t, speaker): a code costs about
-log2 p bits, so a file is close to the prior's bitrate (`speechvq evaluate`) plus a header
of 37 bytes and the speaker's name.

Format, version 1 (integers little-endian; varint = unsigned LEB128)::

    magic          4 bytes   b"SVQ\\x00"
    version        1 byte    FORMAT_VERSION
    file_crc       4 bytes   CRC32 of every byte after this field (truncated or corrupt files are refused)
    units_hash     8 bytes   sha256 of the VQ-VAE's encoder and codebook weights, truncated (`units_hash`)
    prior_hash     8 bytes   sha256 of the prior's weights, truncated (`weights_hash`)
    codes_crc      4 bytes   CRC32 of the codes as uint16 (a decoding that diverged is refused)
    sample_rate    varint    hertz of the audio the codes describe (16000)
    num_codes      varint    F
    num_samples    varint    audio samples at sample_rate (at most 64 F); 0 = unknown (64 F)
    prior_speaker  varint    1 + the prior's speaker row the codes were coded with; 0 = none
    speaker        1 + L     L, then L bytes of UTF-8: the speaker's name (L = 0: none stored)
    payload        4 W       the range coder's W words (uint32)

The units hash covers only what defines the codes (encoder and codebook), so a unit vocoder
trained on a VQ-VAE's frozen units (``units_from=``) decodes that VQ-VAE's files.
Sequences longer than the prior's ``max_len`` are coded in segments of ``max_len`` codes,
each starting afresh from the prior's start token.

Exact decoding. Range decoding needs the decoder's quantized probabilities to equal the
encoder's bit for bit. Both sides therefore compute them by one code path, `_code_loop`:
the prior stepped one code at a time with its key/value cache (`Prior.step_logits`), batch 1,
in a float64 copy on the CPU (rotary tables recomputed in float64), on one thread, with
the speaker row stored in the file, softmax in float64, then constriction's
``Categorical(perfect=False)`` quantization to 24-bit fixed point (deterministic code). Never
is one side teacher-forced and the other stepped, batched differently or run on a GPU, so no
summation order, kernel choice or thread split differs between them: on one machine and
build (whatever --device and --threads say) the probabilities are reproduced exactly.
Residual risk, across machines: another CPU may make BLAS or torch's vector kernels (AVX2 vs
AVX-512) round a last ulp differently, and such a difference may cross a quantization
boundary. A relative perturbation e of the probabilities changes a quantized value with a
chance of about 2^25 e per code: in float64 (e of order 1e-16 to 1e-15) about 1e-9 to 3e-8,
at worst one file in some 40 hours of audio; in float32 (e of order 1e-7) several times per
code. Should it happen, the codes CRC refuses the file instead of returning wrong codes.
Pinning the kernels on both machines (``MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default``)
removes that source too.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import constriction
import numpy as np
import torch

from speechvq.audio import HOP_LENGTH, SAMPLE_RATE
from speechvq.errors import CheckpointError, SpeechVQError
from speechvq.models.loading import load_prior
from speechvq.models.prior import Prior, rotary_tables

MAGIC = b"SVQ\x00"
FORMAT_VERSION = 1
HASH_BYTES = 8
SUFFIX = ".svq"
_PREFIX = struct.Struct("<4sBI")  # magic, version, file_crc
_FIXED = struct.Struct(f"<{HASH_BYTES}s{HASH_BYTES}sI")  # units_hash, prior_hash, codes_crc


def weights_hash(*modules: torch.nn.Module) -> str:
    """2 * HASH_BYTES hex digits: sha256 of the modules' state_dict tensors (each module's keys
    sorted; name, dtype, shape and raw bytes of every tensor), truncated."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{index}.{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[: 2 * HASH_BYTES]


def units_hash(vqvae: torch.nn.Module) -> str:
    """Hash of what defines a VQ-VAE's codes: its encoder and quantizer (codebook) weights."""
    return weights_hash(vqvae.encoder, vqvae.quantizer)


class CodingPrior:
    """A prior ready for entropy coding: a float64 CPU copy, the hash of the original weights and
    its speaker names (embedding rows; may be empty). Build one per prior and reuse it."""

    def __init__(self, prior: Prior, speakers: Sequence[str] = ()):
        self.hash = weights_hash(prior)
        self.speakers = [str(s) for s in speakers]
        model = copy.deepcopy(prior).cpu().double().eval()
        model.rotary_cos, model.rotary_sin = rotary_tables(model.max_len, model.dim // model.heads, torch.float64)
        self.model = model

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, num_codes: int | None = None) -> "CodingPrior":
        """Load a prior checkpoint file or run directory (its best.pt, else last.pt); with `num_codes`
        (the VQ-VAE's K), a prior over another number of codes is refused with a CheckpointError."""
        prior, payload = load_prior(checkpoint, "cpu")
        if num_codes is not None and prior.num_codes != num_codes:
            raise CheckpointError(f"{payload['path']}: prior over {prior.num_codes} codes, but the VQ-VAE has "
                                  f"{num_codes}")
        return cls(prior, payload["speakers"])

    @property
    def num_codes(self) -> int:
        """Codebook size K."""
        return int(self.model.num_codes)

    def speaker_row(self, name: str | None) -> int:
        """The prior's conditioning row for speaker `name`: -1 for None, an unknown name or an unconditional prior."""
        if self.model.num_speakers == 0 or name not in self.speakers:
            return -1
        return self.speakers.index(name)


@dataclass(frozen=True)
class SvqHeader:
    """The fields of a .svq header (see the module docstring); hashes as hex strings."""

    units_hash: str
    prior_hash: str
    codes_crc: int
    sample_rate: int
    num_codes: int
    num_samples: int
    prior_speaker: int
    speaker: str


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread (BLAS results may depend on the thread split), then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _categorical(probabilities: np.ndarray):
    return constriction.stream.model.Categorical(probabilities, perfect=False, lazy=True)


def _code_loop(model: Prior, num_codes: int, speaker: int, code_at: Callable[[np.ndarray, int], int]) -> np.ndarray:
    """The one loop of both directions: for t = 0..F-1, `code_at((K,) float64 probabilities, t)`
    encodes the known code t or decodes it, and returns it; it then feeds the prior. Returns (F,) int64."""
    codes = np.empty(num_codes, dtype=np.int64)
    with _one_thread():
        for start in range(0, num_codes, model.max_len):
            end = min(num_codes, start + model.max_len)
            stream = model.step_logits(end - start, speaker)
            logits = next(stream)
            for t in range(start, end):
                codes[t] = code_at(torch.softmax(logits, dim=-1).numpy(), t)
                if t + 1 < end:
                    logits = stream.send(int(codes[t]))
    return codes


def _codes_crc(codes: np.ndarray) -> int:
    return zlib.crc32(np.asarray(codes, dtype="<u2").tobytes())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); IndexError past the end."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _coding_prior(prior: Prior | CodingPrior) -> CodingPrior:
    return prior if isinstance(prior, CodingPrior) else CodingPrior(prior)


def compress_codes(prior: Prior | CodingPrior, codes: np.ndarray, *, units_hash: str, speaker: int = -1,
                   speaker_name: str = "", sample_rate: int = SAMPLE_RATE, num_samples: int = 0) -> bytes:
    """(F,) ints in [0, K) -> the bytes of a .svq file (F >= 1).

    units_hash: the VQ-VAE's `units_hash`. speaker: the prior's conditioning row (-1: none; an
    unconditional prior takes only -1). speaker_name: stored for the decoder's voice ("" = none,
    at most 255 UTF-8 bytes). num_samples: the audio's length at `sample_rate` (0 = 64 F).
    A `Prior` is wrapped in a `CodingPrior` (a float64 copy) on every call: reuse one instead.
    """
    coding = _coding_prior(prior)
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0 or not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 \
            or codes.max() >= coding.num_codes:
        raise SpeechVQError(f"codes must be a non-empty sequence of integers in [0, {coding.num_codes})")
    if not -1 <= speaker < coding.model.num_speakers:
        raise ValueError(f"speaker row {speaker} outside [-1, {coding.model.num_speakers})")
    if not 0 <= num_samples <= HOP_LENGTH * codes.size:
        raise ValueError(f"num_samples {num_samples} does not fit {codes.size} codes")
    if len(bytes.fromhex(units_hash)) != HASH_BYTES:
        raise ValueError(f"units_hash must be {2 * HASH_BYTES} hex digits, got {units_hash!r}")
    name = speaker_name.encode("utf-8")
    if len(name) > 255:
        raise SpeechVQError(f"speaker name {speaker_name[:40]!r}... is longer than 255 bytes")
    encoder = constriction.stream.queue.RangeEncoder()

    def encode(probabilities: np.ndarray, t: int) -> int:
        encoder.encode(int(codes[t]), _categorical(probabilities))
        return int(codes[t])

    _code_loop(coding.model, codes.size, speaker, encode)
    body = (_FIXED.pack(bytes.fromhex(units_hash), bytes.fromhex(coding.hash), _codes_crc(codes))
            + b"".join(_varint(v) for v in (sample_rate, codes.size, num_samples, speaker + 1))
            + bytes([len(name)]) + name + encoder.get_compressed().astype("<u4").tobytes())
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, zlib.crc32(body)) + body


def read_header(data: bytes, name: str = "<data>") -> tuple[SvqHeader, bytes]:
    """Check and parse a .svq file's bytes -> (header, payload); `name` (the file) leads every error.

    Refused with a one-line SpeechVQError: bad magic bytes, another format version, a file too
    short for its header, a checksum mismatch (truncated or corrupt).
    """
    if not data or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise SpeechVQError(f"{name}: not a .svq file (bad magic bytes)")
    if len(data) > len(MAGIC) and data[len(MAGIC)] != FORMAT_VERSION:
        raise SpeechVQError(f"{name}: .svq format version {data[len(MAGIC)]}; this speechvq reads version "
                            f"{FORMAT_VERSION}")
    if len(data) < _PREFIX.size + _FIXED.size:
        raise SpeechVQError(f"{name}: truncated .svq file ({len(data)} bytes)")
    _, _, file_crc = _PREFIX.unpack_from(data)
    if zlib.crc32(data[_PREFIX.size:]) != file_crc:
        raise SpeechVQError(f"{name}: corrupt or truncated .svq file (checksum mismatch)")
    units, prior, codes_crc = _FIXED.unpack_from(data, _PREFIX.size)
    try:
        pos = _PREFIX.size + _FIXED.size
        fields = []
        for _ in range(4):
            value, pos = _read_varint(data, pos)
            fields.append(value)
        length = data[pos]
        speaker = data[pos + 1 : pos + 1 + length].decode("utf-8")
        payload = data[pos + 1 + length :]
    except (IndexError, UnicodeDecodeError):
        raise SpeechVQError(f"{name}: malformed .svq header") from None
    sample_rate, num_codes, num_samples, prior_speaker = fields
    if len(speaker.encode("utf-8")) != length or len(payload) % 4 or num_codes < 1:
        raise SpeechVQError(f"{name}: malformed .svq header")
    header = SvqHeader(units.hex(), prior.hex(), codes_crc, sample_rate, num_codes, num_samples,
                       prior_speaker - 1, speaker)
    return header, payload


def decompress_codes(prior: Prior | CodingPrior, data: bytes, *, units_hash: str,
                     name: str = "<data>") -> tuple[np.ndarray, SvqHeader]:
    """The bytes of a .svq file -> ((F,) int64 codes, header), exactly the codes compressed.

    Refused with a one-line SpeechVQError naming `name`: everything `read_header` refuses, a
    file made with other VQ-VAE units or another prior (both hashes named), decoded codes that
    fail their checksum.
    """
    coding = _coding_prior(prior)
    header, payload = read_header(data, name)
    if header.units_hash != units_hash:
        raise SpeechVQError(f"{name}: made with VQ-VAE units {header.units_hash}, but this checkpoint's "
                            f"units are {units_hash}")
    if header.prior_hash != coding.hash:
        raise SpeechVQError(f"{name}: made with prior {header.prior_hash}, but this prior is {coding.hash}")
    if not -1 <= header.prior_speaker < coding.model.num_speakers:
        raise SpeechVQError(f"{name}: malformed .svq header (speaker row {header.prior_speaker})")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    codes = _code_loop(coding.model, header.num_codes, header.prior_speaker,
                       lambda probabilities, t: int(decoder.decode(_categorical(probabilities))))
    if _codes_crc(codes) != header.codes_crc:
        raise SpeechVQError(f"{name}: the decoded codes fail their checksum: this machine's prior "
                            "probabilities differ from those of the machine that compressed it")
    return codes, header
