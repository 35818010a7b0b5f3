"""`speechvq encode CKPT (WAV... | --data PREPARED) --out DIR`: audio -> discrete codes."""

from __future__ import annotations

import argparse

from speechvq.cli.common import add_compute_arguments, setup_compute

DESCRIPTION = """Encode audio to codes (250 per second, int16).
  files:  speechvq encode CKPT a.wav b.flac --out DIR      -> DIR/<stem>.npy per input
  corpus: speechvq encode CKPT --data PREPARED --out DIR  -> DIR/manifest.jsonl + DIR/<split>.int16 (+ meta.json)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("inputs", nargs="*", help="audio files, directories or list files")
    parser.add_argument("--data", default=None, help="a prepared corpus (speechvq prepare) to encode whole")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def _encode_corpus(model, data: str, out: str, progress: bool) -> None:
    from tqdm import tqdm

    from speechvq.audio import CODES_PER_SECOND
    from speechvq.data.codes import write_corpus_codes
    from speechvq.data.dataset import PreparedCorpus, iter_utterances

    corpus = PreparedCorpus(data)
    utterances = corpus.utterances()

    def items():
        for utt, wav in tqdm(iter_utterances(corpus, None), total=len(utterances), desc="encode", unit="utt",
                             disable=not progress):
            yield {"id": utt.id, "speaker": utt.speaker, "split": utt.split}, model.encode(wav)

    meta = {"num_codes": model.num_codes, "codes_per_second": CODES_PER_SECOND, "checkpoint": model.checkpoint,
            "speakers": model.speakers, "prepared": str(corpus.root)}
    codes = write_corpus_codes(out, items(), meta)
    print(f"wrote codes of {len(codes.entries())} utterances to {out}")


def _output_names(sources: list, suffix: str = ".npy") -> list[str]:
    """Output stem per input: its file stem, prefixed with its folder name where two inputs share a stem
    (`suffix`: the outputs' extension, for the message when two would still clash)."""
    from collections import Counter

    from speechvq.errors import SpeechVQError

    counts = Counter(p.stem for p in sources)
    names = [p.stem if counts[p.stem] == 1 else f"{p.resolve().parent.name}_{p.stem}" for p in sources]
    clash = next((n for n, c in Counter(names).items() if c > 1), None)
    if clash is not None:
        raise SpeechVQError(f"several inputs would be written as {clash}{suffix}; process them in separate runs")
    return names


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from speechvq.audio import load_audio
    from speechvq.data.codes import save_codes
    from speechvq.errors import AudioError, SpeechVQError
    from speechvq.inference.convert import collect_inputs, report_failures
    from speechvq.inference.pipeline import SpeechVQ

    if bool(args.inputs) == bool(args.data):
        raise SpeechVQError("give either audio inputs or --data PREPARED (not both, not neither)")
    device = setup_compute(args)
    if args.data:
        _encode_corpus(SpeechVQ.from_checkpoint(args.checkpoint, device=device), args.data, args.out,
                       progress=not args.quiet)
        return 0
    sources = list(dict.fromkeys(collect_inputs(args.inputs)))
    names = _output_names(sources)
    model = SpeechVQ.from_checkpoint(args.checkpoint, device=device)
    failures = []
    written = 0
    for src, name in tqdm(zip(sources, names), total=len(sources), desc="encode", unit="file",
                          disable=args.quiet):
        try:
            save_codes(Path(args.out) / f"{name}.npy", model.encode(load_audio(src)))
            written += 1
        except AudioError as exc:
            failures.append((src, str(exc)))
    print(f"wrote codes of {written} files to {args.out}")
    return report_failures(failures, "encode")
