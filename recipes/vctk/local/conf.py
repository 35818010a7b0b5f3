"""Small helpers for run.sh: read a recipe conf, plan the conversion pairs, print figures.

    python local/conf.py shell CONF                 every value as a bash assignment (eval it):
                                                    a.b: 1 -> conf_a_b=1, lists -> bash arrays
    python local/conf.py pairs CONF PREPARED OUTDIR the fixed list of source -> target pairs
    python local/conf.py has-alignments PREPARED    exit 0 if any utterance has an alignment
    python local/conf.py speakers PREPARED N        the first N speakers (sorted), one per line
    python local/conf.py headline RUN               the run's headline figures, one per line

A conf may start from another: ``base: vcc2016.yaml`` takes every value of that conf and
overrides those given here.

``pairs`` reads the prepared corpus' manifest and the conf's ``convert.pairs`` section and
writes into OUTDIR:

    pairs.tsv        id, source_speaker, target_speaker, source path — every conversion
    sources.list     every source utterance once (the input of `speechvq reconstruct`)
    groups.tsv       TARGETS<TAB>LIST: one `speechvq convert LIST --speaker TARGETS` call each;
                     sources with the same target set share a call, so they are batched together
    groups/NN.list   the source paths of one call

The selection is deterministic (sorted ids of the chosen split), so the same conf and the
same prepared corpus always give the same list. A source is never converted to its own
speaker (that is what `reconstruct` is for).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

from omegaconf import OmegaConf


def fail(message: str) -> None:
    print(f"conf: error: {message}", file=sys.stderr)
    sys.exit(2)


def load(conf: str):
    """A conf; one with ``base: OTHER.yaml`` is that conf (beside it) with this one's values on top
    (lists are replaced, not appended), so a variant names only what it changes."""
    path = Path(conf)
    if not path.is_file():
        fail(f"{conf}: no such conf file")
    node = OmegaConf.load(path)
    base = node.pop("base", None)
    if base is None:
        return node
    if Path(base).name != base or base == path.name:
        fail(f"{conf}: base must name another conf file in the same folder, got {base!r}")
    return OmegaConf.merge(load(str(path.parent / base)), node)


def _shell_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return shlex.quote("" if value is None else str(value))


def cmd_shell(conf: str) -> None:
    """Print `conf_<path>=value` for scalars and `conf_<path>=(items)` for lists of scalars."""
    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(key))}", value)
        elif isinstance(node, list):
            if all(not isinstance(v, (dict, list)) for v in node):
                print(f"{prefix}=(" + " ".join(_shell_value(v) for v in node) + ")")
        else:
            print(f"{prefix}={_shell_value(node)}")

    walk("conf", OmegaConf.to_container(load(conf), resolve=True))


def read_manifest(prepared: str) -> list[dict]:
    manifest = Path(prepared) / "manifest.jsonl"
    if not manifest.is_file():
        fail(f"{prepared}: not a prepared corpus (no manifest.jsonl)")
    with open(manifest, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def select_pairs(rows: list[dict], spec: dict) -> list[tuple[dict, str]]:
    """(source manifest row, target speaker) pairs chosen by a conf's convert.pairs section.

    spec keys: split (source split, default "test"), speakers (source speakers; null = all,
    sorted), max_speakers (keep the first N of them), per_speaker (first N utterances of each
    in the split; null = all), ids (extra source ids, any split), targets (null = the chosen
    speakers; an integer N = the first N of them; or a list of names).
    """
    known = sorted({r["speaker"] for r in rows})
    speakers = list(spec.get("speakers") or known)
    unknown = [s for s in speakers if s not in known]
    if unknown:
        fail(f"convert.pairs.speakers: unknown speakers {unknown}; the corpus has {known}")
    if spec.get("max_speakers"):
        speakers = speakers[: int(spec["max_speakers"])]
    targets = spec.get("targets")
    if targets is None:
        targets = speakers
    elif isinstance(targets, int):
        targets = speakers[:targets]
    else:
        targets = list(targets)
        bad = [t for t in targets if t not in known]
        if bad:
            fail(f"convert.pairs.targets: unknown speakers {bad}; the corpus has {known}")
    split = spec.get("split", "test")
    per_speaker = spec.get("per_speaker")
    sources: list[dict] = []
    for speaker in speakers:
        chosen = sorted((r for r in rows if r["speaker"] == speaker and r["split"] == split), key=lambda r: r["id"])
        sources.extend(chosen if per_speaker is None else chosen[: int(per_speaker)])
    by_id = {r["id"]: r for r in rows}
    for utt_id in spec.get("ids") or []:
        if utt_id not in by_id:
            fail(f"convert.pairs.ids: {utt_id} is not in the prepared corpus")
        sources.append(by_id[utt_id])
    sources = list({r["id"]: r for r in sources}.values())
    if not sources:
        fail(f"convert.pairs: no source utterances (no {split!r} utterances of {speakers})")
    return [(r, t) for r in sources for t in targets if t != r["speaker"]]


def cmd_pairs(conf: str, prepared: str, outdir: str) -> None:
    spec = OmegaConf.to_container(OmegaConf.select(load(conf), "convert.pairs", default=OmegaConf.create({})),
                                  resolve=True)
    pairs = select_pairs(read_manifest(prepared), spec)
    out = Path(outdir)
    (out / "groups").mkdir(parents=True, exist_ok=True)
    for old in (out / "groups").glob("*.list"):
        old.unlink()
    targets_of: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    for row, target in pairs:
        targets_of.setdefault(row["id"], []).append(target)
        rows[row["id"]] = row
    (out / "pairs.tsv").write_text(
        "id\tsource_speaker\ttarget_speaker\tsource\n"
        + "".join(f"{r['id']}\t{r['speaker']}\t{t}\t{r['source']}\n" for r, t in pairs), encoding="utf-8")
    (out / "sources.list").write_text("".join(f"{r['source']}\n" for r in rows.values()), encoding="utf-8")
    groups: dict[str, list[str]] = {}
    for utt_id, targets in targets_of.items():
        groups.setdefault(",".join(targets), []).append(rows[utt_id]["source"])
    lines = []
    for n, (targets, sources) in enumerate(groups.items()):
        listing = out / "groups" / f"{n:02d}.list"
        listing.write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")
        lines.append(f"{targets}\t{listing}\n")
    (out / "groups.tsv").write_text("".join(lines), encoding="utf-8")
    print(f"{len(pairs)} conversions of {len(rows)} source utterances in {len(groups)} convert calls "
          f"(list: {out / 'pairs.tsv'})")


def cmd_has_alignments(prepared: str) -> None:
    sys.exit(0 if any(r.get("alignment") for r in read_manifest(prepared)) else 1)


def cmd_speakers(prepared: str, count: str) -> None:
    for speaker in sorted({r["speaker"] for r in read_manifest(prepared)})[: int(count)]:
        print(speaker)


def cmd_headline(run: str) -> None:
    from speechvq.analysis.report import headline_figures

    for label, value in headline_figures(run):
        print(f"  {label}: {value}")


def main(argv: list[str]) -> None:
    commands = {"shell": (cmd_shell, (2, 2)), "pairs": (cmd_pairs, (4, 4)),
                "has-alignments": (cmd_has_alignments, (2, 2)),
                "speakers": (cmd_speakers, (3, 3)),
                "headline": (cmd_headline, (2, 2))}
    if not argv or argv[0] not in commands or not commands[argv[0]][1][0] <= len(argv) <= commands[argv[0]][1][1]:
        fail(f"usage: see {__file__}'s docstring (got {argv})")
    commands[argv[0]][0](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
