"""speechvq's .svq codec against Opus at low bitrates, on a list of utterances.

For each utterance (read at 16 kHz mono) and each codec, the decoded audio is compared with
the original:

- ``speechvq``: `speechvq compress` then `decompress` (in the stored speaker's voice: the
  input's parent folder name when the VQ-VAE knows it, else --speaker);
- ``opus_<K>kbps``: Debian's opus-tools, ``opusenc --bitrate K --hard-cbr`` then
  ``opusdec --rate 16000`` (default K = 6 and 8).

Metrics: ``bits_per_second`` (the compressed file's size over the audio's duration: the .svq
header or the Ogg container included), ``payload_bits_per_second`` (the coded audio alone: the
.svq payload, the Opus audio packets; headers cost more, relatively, on short utterances),
``mcd_db`` (mel-cepstral distortion against the original, `speechvq.analysis.metrics`) and
``speaker_similarity`` (cosine of resemblyzer speaker embeddings of the decoded audio and the
original). Writes every file under --work, the rows and per-codec means to --json, and a
markdown table on stdout.

    python tools/codec_compare.py exp/vqvae exp/prior data/test/*.wav --work exp/codec --json exp/codec.json
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechvq.analysis.metrics import SpeakerEncoder, cosine_similarity, mcd_frames, mcep_features
from speechvq.audio import SAMPLE_RATE, load_audio, save_wav
from speechvq.cli.encode import _output_names
from speechvq.errors import SpeechVQError
from speechvq.fileio import write_bytes_atomic, write_json_atomic
from speechvq.inference.codec import SUFFIX, CodingPrior, read_header
from speechvq.inference.convert import collect_inputs
from speechvq.inference.pipeline import SpeechVQ

METRICS = ("bits_per_second", "payload_bits_per_second", "mcd_db", "speaker_similarity")


def opus_audio_bytes(path: Path) -> int:
    """Bytes of the audio packets of an Ogg Opus file: all packets but the first two (OpusHead and
    OpusTags, RFC 7845), without the Ogg page headers. Packets end at a lacing value below 255."""
    data = path.read_bytes()
    pos = packets = audio = current = 0
    while pos < len(data):
        lacing = data[pos + 27 : pos + 27 + data[pos + 26]]  # a 27-byte page header, then the segment table
        pos += 27 + len(lacing) + sum(lacing)
        for size in lacing:
            current += size
            if size < 255:
                audio += current if packets >= 2 else 0
                packets, current = packets + 1, 0
    return audio


def opus_round_trip(wav_path: Path, kbps: float, work: Path) -> tuple[Path, Path]:
    """(the .opus file, its decoding at 16 kHz) of `wav_path` at `kbps` kbit/s, hard CBR."""
    opus, decoded = work / f"{wav_path.stem}.opus", work / f"{wav_path.stem}.wav"
    work.mkdir(parents=True, exist_ok=True)
    for command in (["opusenc", "--quiet", "--bitrate", str(kbps), "--hard-cbr", str(wav_path), str(opus)],
                    ["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(opus), str(decoded)]):
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise SystemExit(f"codec_compare.py: {command[0]} failed on {wav_path}: {reason}")
    return opus, decoded


def summary(rows: list[dict]) -> dict:
    """Per codec: the mean of each metric over its utterances, and their number."""
    out = {}
    for codec in dict.fromkeys(r["codec"] for r in rows):
        mine = [r for r in rows if r["codec"] == codec]
        out[codec] = {m: float(np.mean([r[m] for r in mine])) for m in METRICS} | {"utterances": len(mine)}
    return out


def markdown(table: dict) -> str:
    lines = ["| codec | bits/s (file) | bits/s (payload) | MCD (dB) | speaker similarity | utterances |",
             "|---|---:|---:|---:|---:|---:|"]
    for codec, s in table.items():
        lines.append(f"| {codec} | {s['bits_per_second']:.0f} | {s['payload_bits_per_second']:.0f} | "
                     f"{s['mcd_db']:.2f} | {s['speaker_similarity']:.3f} | {s['utterances']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("prior", help="prior checkpoint file or run directory")
    parser.add_argument("inputs", nargs="+", help="audio files, directories or list files")
    parser.add_argument("--work", required=True, help="directory for the compressed and decoded files")
    parser.add_argument("--json", required=True, help="output JSON file")
    parser.add_argument("--opus-kbps", default="6,8", help="comma-separated Opus bitrates in kbit/s (default 6,8)")
    parser.add_argument("--speaker", default=None, help="voice for inputs whose folder is not a speaker of the model")
    parser.add_argument("--device", default="cpu", help="where the VQ-VAE runs (cpu or cuda)")
    parser.add_argument("--seed", type=int, default=0, help="decoder sampling seed (as decompress --seed)")
    args = parser.parse_args()
    missing = [tool for tool in ("opusenc", "opusdec") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"codec_compare.py needs {' and '.join(missing)}: apt-get install opus-tools")
    bitrates = [float(k) for k in args.opus_kbps.split(",") if k]

    try:
        model = SpeechVQ.from_checkpoint(args.checkpoint, device=args.device)
        prior = CodingPrior.from_checkpoint(args.prior, num_codes=model.num_codes)
        sources = list(dict.fromkeys(collect_inputs(args.inputs)))
        names = _output_names(sources, SUFFIX)
        encoder = SpeakerEncoder()
    except SpeechVQError as exc:
        raise SystemExit(f"codec_compare.py: {exc}") from None
    work = Path(args.work)
    rows = []
    for src, name in tqdm(list(zip(sources, names)), desc="codec_compare", unit="utt"):
        try:
            original = load_audio(src)
            folder = src.resolve().parent.name
            speaker = folder if folder in model.speakers else None
            data = model.compress(original, prior, speaker=speaker)
            svq = work / "speechvq" / f"{name}{SUFFIX}"
            write_bytes_atomic(svq, data)
            wav = model.decompress(data, prior, speaker=None if speaker else args.speaker, seed=args.seed,
                                   name=str(svq))
            decoded = {"speechvq": (svq, len(read_header(data)[1]), wav)}
            save_wav(work / "speechvq" / f"{name}.wav", wav)
            reference = save_wav(work / "original" / f"{name}.wav", original)
            for kbps in bitrates:
                codec = f"opus_{kbps:g}kbps"
                opus, opus_wav = opus_round_trip(reference, kbps, work / codec)
                decoded[codec] = (opus, opus_audio_bytes(opus), load_audio(opus_wav))
            features, embedding = mcep_features(original), encoder.embed(original)
            seconds = original.shape[0] / SAMPLE_RATE
            for codec, (path, payload_bytes, wav) in decoded.items():
                rows.append({"utterance": str(src), "codec": codec, "file": str(path),
                             "bits_per_second": 8 * path.stat().st_size / seconds,
                             "payload_bits_per_second": 8 * payload_bytes / seconds,
                             "mcd_db": mcd_frames(features, mcep_features(wav)),
                             "speaker_similarity": cosine_similarity(embedding, encoder.embed(wav))})
        except SpeechVQError as exc:
            print(f"codec_compare.py: skipped: {exc}", file=sys.stderr)
    if not rows:
        raise SystemExit("codec_compare.py: no utterance could be compared")
    table = summary(rows)
    write_json_atomic(args.json, {"checkpoint": args.checkpoint, "prior": args.prior, "opus_kbps": bitrates,
                                  "summary": table, "rows": rows})
    print(markdown(table))


if __name__ == "__main__":
    main()
