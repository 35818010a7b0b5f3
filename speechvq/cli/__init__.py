"""`speechvq <command>`: one thin entry point over the package's functions.

Each command lives in ``speechvq/cli/<name>.py`` (its one-line help is in COMMANDS below) and provides
``add_arguments(parser)`` and ``run(args) -> int``. Mistakes a user can fix raise
`SpeechVQError` and end with a one-line message and exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from speechvq import __version__
from speechvq.errors import SpeechVQError

# command name -> (module under speechvq.cli, one-line help). Order = order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "synthesise a parallel multi-voice corpus with espeak-ng, with phone TextGrids"),
    "prepare": ("prepare", "resample a corpus into a 16 kHz int16 cache with manifest.jsonl (resumable)"),
    "align": ("align", "phone TextGrids from transcripts with pocketsphinx"),
    "train": ("train", "train the VQ-VAE (hydra overrides: run_dir=RUN data.prepared=DIR model=tiny ...)"),
    "diagnose": ("diagnose", "codebook usage, perplexity and the posterior-collapse check"),
    "encode": ("encode", "audio files or a prepared corpus -> discrete codes"),
    "decode": ("decode", "codes -> audio in a chosen speaker's voice"),
    "reconstruct": ("reconstruct", "encode and decode audio in its own speaker's voice"),
    "convert": ("convert", "voice conversion: encode source audio, decode as another speaker"),
    "train-prior": ("train_prior", "train the autoregressive prior over codes (hydra overrides)"),
    "sample": ("sample", "draw codes from the prior and decode them to speech"),
    "compress": ("compress", "audio -> .svq files: codes entropy-coded with the prior (about 1 kbit/s)"),
    "decompress": ("decompress", ".svq files -> audio in the stored or a chosen speaker's voice"),
    "evaluate": ("evaluate", "held-out likelihood: bits per sample, bits per code, bitrate"),
    "probe": ("probe", "phone and speaker probes of the codes (many-to-one, PNMI, purity, linear)"),
    "score": ("score", "conversion metrics: speaker similarity, MCD, code agreement"),
    "report": ("report", "write the samples page (HTML) of a recipe run"),
    "info": ("info", "speakers, config, step and code usage of a checkpoint"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechvq", description="Discrete speech units with a VQ-VAE.")
    parser.add_argument("--version", action="version", version=f"speechvq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module, help_line) in COMMANDS.items():
        sub.add_parser(name, help=help_line, description=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help", "--version") and not argv[0].startswith("-"):
            parser.error(f"unknown command {argv[0]!r}; choose from: {', '.join(COMMANDS)}")
        parser.parse_args(argv or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_line = COMMANDS[name]
    module = importlib.import_module(f"speechvq.cli.{module_name}")
    sub = argparse.ArgumentParser(prog=f"speechvq {name}", description=getattr(module, "DESCRIPTION", help_line),
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except SpeechVQError as exc:
        print(f"speechvq {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"speechvq {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
