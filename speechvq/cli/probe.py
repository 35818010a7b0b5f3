"""`speechvq probe CKPT --data PREPARED --json F`: phone and speaker probes of the codes."""

from __future__ import annotations

import argparse

from speechvq.analysis.abx import DEFAULT_MAX_ITEMS
from speechvq.analysis.linear_probe import DEFAULT_MAX_PROBE_FRAMES
from speechvq.analysis.probe import run_probe
from speechvq.cli.common import add_compute_arguments, setup_compute
from speechvq.data.dataset import PreparedCorpus
from speechvq.data.phones import load_phone_map
from speechvq.errors import SpeechVQError
from speechvq.fileio import write_json_atomic
from speechvq.models.loading import load_vqvae

DESCRIPTION = """Phone and speaker probes of the discrete units of a VQ-VAE, on a prepared corpus with
phone alignments. Each 64-sample frame is labelled with the phone at its centre (normalised
phone set; silence is one class). Mappings and probes are fitted on the train split and scored
on the test split (--speaker-disjoint: scored on speakers held out of fitting).

Reports many-to-one accuracy (code -> most frequent phone) against the majority baseline,
linear probes on the quantized vectors and on the encoder outputs (accuracy, per-phone F1),
PNMI, phone and code purity, a speaker probe against chance, and code usage. Beside the
codes, the field's yardsticks: k-means units (K = 512 and the model's K) of log-mel and of
MFCC+delta+delta-delta frames, scored the same way; triphone ABX error rates within and
across speakers (ZeroSpeech scoring, zrc_abx2) of the encoder outputs, quantized vectors,
codes and log-mel frames on the test split; utterance speaker identification from code
histograms (leave one utterance out).

example: speechvq probe exp/demo/vqvae --data exp/demo/data --json probe.json --plots probe/"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="VQ-VAE checkpoint file or run directory")
    parser.add_argument("--data", required=True, help="prepared corpus with phone alignments (speechvq prepare)")
    parser.add_argument("--json", required=True, help="write the figures to this JSON file")
    parser.add_argument("--plots", default=None, help="write the co-occurrence and confusion plots (PNG) here")
    parser.add_argument("--exclude-silence", action="store_true", help="leave silence frames out")
    parser.add_argument("--phone-map", default=None,
                        help="TSV of 'phone<TAB>replacement' lines overriding the built-in phone folding")
    parser.add_argument("--speaker-disjoint", action="store_true",
                        help="score phone measures on speakers held out of fitting (the speakers "
                             "`prepare --holdout-speakers` put in test, else a seeded third of them)")
    parser.add_argument("--max-utterances", type=int, default=None,
                        help="encode at most N utterances per split (seeded random subset)")
    parser.add_argument("--max-probe-frames", type=int, default=DEFAULT_MAX_PROBE_FRAMES,
                        help=f"training frames per linear probe (random subset; default {DEFAULT_MAX_PROBE_FRAMES})")
    parser.add_argument("--max-abx-items", type=int, default=DEFAULT_MAX_ITEMS,
                        help="ABX triphone items at most (whole contexts drawn with --seed; "
                             f"default {DEFAULT_MAX_ITEMS})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> int:
    for name in ("max_utterances", "max_probe_frames", "max_abx_items"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpeechVQError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    device = setup_compute(args)
    corpus = PreparedCorpus(args.data)
    if not corpus.has_alignments:
        raise SpeechVQError(f"{args.data}: the prepared corpus has no phone alignments; "
                            "make TextGrids with `speechvq align` and prepare it with them")
    phone_map = load_phone_map(args.phone_map) if args.phone_map else None
    vqvae, _, _ = load_vqvae(args.checkpoint, device=device)
    result = run_probe(vqvae, corpus, device=device, exclude_silence=args.exclude_silence, phone_map=phone_map,
                       speaker_disjoint=args.speaker_disjoint, max_utterances=args.max_utterances,
                       max_probe_frames=args.max_probe_frames, max_abx_items=args.max_abx_items, seed=args.seed,
                       plots_dir=args.plots,
                       progress=not args.quiet)
    write_json_atomic(args.json, result)
    print(format_result(result))
    print(f"wrote {args.json}")
    return 0


def format_result(result: dict) -> str:
    """The headline figures of a probe result, one per line."""
    def pct(key: str) -> str:
        value = result.get(key)
        return "-" if value is None else f"{100 * value:.1f}%"

    def num(key: str) -> str:
        value = result.get(key)
        return "-" if value is None else f"{value:.3f}"

    def share(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    baselines = {k: v for k, v in result.get("baselines", {}).items() if k != "codes_over_best"}
    abx = result.get("abx", {})

    return "\n".join([
        f"frames: {result['num_frames']} test, {result['num_frames_train']} train; "
        f"{result['num_phones']} phones; {result['used_codes']}/{result['num_codes']} codes used",
        f"many-to-one accuracy {pct('many_to_one_accuracy')} (majority baseline {pct('majority_baseline')})",
        f"linear probe {pct('linear_probe_accuracy')} on codes, {pct('linear_probe_accuracy_continuous')} "
        "on encoder outputs",
        f"PNMI {num('pnmi')}, phone purity {num('phone_purity')}, code purity {num('code_purity')}",
        f"speaker probe {pct('speaker_probe_accuracy')} on codes, {pct('speaker_probe_accuracy_continuous')} "
        f"on encoder outputs (chance {pct('speaker_chance_uniform')}, majority {pct('speaker_chance')})",
        f"utterance speaker identification {pct('utterance_speaker_accuracy')} from code histograms "
        f"(chance {pct('utterance_speaker_chance')})",
        *(f"baseline {name} (K={b['num_clusters']}): many-to-one {share(b['many_to_one_accuracy'])}, "
          f"PNMI {'-' if b['pnmi'] is None else format(b['pnmi'], '.3f')}, "
          f"utterance speaker {share(b['utterance_speaker_accuracy'])}" for name, b in baselines.items()),
        *(f"ABX {mode.replace('_', ' ')} ({abx.get('num_items', 0)} items): "
          + ", ".join(f"{name} {share(rate)}" for name, rate in abx[mode].items())
          for mode in ("within_speaker", "across_speaker") if mode in abx),
    ])
