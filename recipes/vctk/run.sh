#!/usr/bin/env bash
# The speechvq recipe: raw corpus -> VQ-VAE -> codes -> prior -> probes -> conversions -> samples page.
#
#   recipes/vctk/run.sh [--conf conf/cpu.yaml] [--out exp/NAME] [--stage N] [--stop-stage M]
#                       [--vctk-root DIR | --corpus-root DIR --layout folders] [--test-ids FILE]
#                       [--download-dir DIR] [--data PREPARED] [--train-override KEY=VALUE ...]
#                       [--vocoder-override KEY=VALUE ...] [--demo]
#
# Stages (README.md beside this script has the details):
#   0 corpus    download VCTK 0.92 (resumable, checksum verified, extracted once), or use
#               --vctk-root / --corpus-root; --demo: synthesise a 6-voice espeak-ng corpus
#   1 prepare   `speechvq align` (TextGrids from VCTK's transcripts; skipped without
#               transcripts and for --demo, whose corpus has espeak-ng's alignments) + `speechvq prepare`
#   2 train     `speechvq train` the VQ-VAE, then `speechvq diagnose` (codebook, collapse gap);
#               with `vocoder.overrides` in the conf, also a unit vocoder on its frozen codes
#               (`speechvq train units_from=...`), which then decodes in stages 4 and 6
#   3 encode    `speechvq encode --data`: the codes of the whole corpus
#   4 prior     `speechvq train-prior`, `speechvq evaluate`, `speechvq sample`
#   5 probe     `speechvq probe` (skipped without phone alignments)
#   6 convert   the conf's fixed pair list: `speechvq convert --batch`, `speechvq reconstruct`,
#               `speechvq score` of both, and `speechvq score --real` (the target speakers'
#               real recordings scored the same way: the ceiling)
#   7 report    `speechvq report`: the samples page
# --data reuses a corpus prepared by another run (linked as exp/NAME/data; stage 1 is then
# skipped); --train-override and --vocoder-override (repeatable) append hydra overrides to the
# conf's `train.overrides` / `vocoder.overrides`: the ablation rows of README.md are made so.
# Outputs go under exp/NAME/: data/ vqvae/ codes/ prior/ probe/ convert/ score/ report/
# (plus corpus/ for --demo and align/ for VCTK). A finished stage leaves exp/NAME/.done/N and
# is skipped on the next run (delete the file to redo it); training resumes from its last
# checkpoint. Each stage prints its wall time; the last line printed is `samples page: PATH`.
# Commands come from PATH (activate the virtual environment, or use `make demo`).
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python}

conf="" out="" stage=0 stop_stage=7 vctk_root="" corpus_root="" layout="auto" test_ids="" demo=false
download_dir="" prepared="" extra_train=() extra_vocoder=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --conf) conf=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --vctk-root) vctk_root=$2; shift 2 ;;
    --corpus-root) corpus_root=$2; shift 2 ;;
    --layout) layout=$2; shift 2 ;;
    --test-ids) test_ids=$2; shift 2 ;;
    --download-dir) download_dir=$2; shift 2 ;;
    --data) prepared=$2; shift 2 ;;
    --train-override) extra_train+=("$2"); shift 2 ;;
    --vocoder-override) extra_vocoder+=("$2"); shift 2 ;;
    --demo) demo=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

[[ $stage =~ ^[0-7]$ && $stop_stage =~ ^[0-7]$ ]] || die "--stage and --stop-stage take 0..7 (got $stage, $stop_stage)"
[ -n "$vctk_root" ] && [ -n "$corpus_root" ] && die "give --vctk-root or --corpus-root, not both"
$demo && { [ -n "$vctk_root" ] || [ -n "$corpus_root" ]; } && die "--demo synthesises its own corpus; drop --vctk-root/--corpus-root"
case "$layout" in auto|vctk|folders) ;; *) die "--layout takes auto, vctk or folders (got $layout)" ;; esac
command -v speechvq >/dev/null || die "speechvq is not on PATH; activate the virtual environment (make install) first"
command -v "$PY" >/dev/null || die "$PY not found; set PYTHON=/path/to/python"

if [ -z "$conf" ]; then
  if $demo; then conf=conf/demo.yaml; else conf=conf/cpu.yaml; fi
fi
[ -f "$conf" ] || { [ -f "$RECIPE_DIR/$conf" ] && conf="$RECIPE_DIR/$conf"; } || die "$conf: no such conf file"
conf=$(cd "$(dirname "$conf")" && pwd)/$(basename "$conf")
[ -z "$out" ] && out=exp/$(basename "$conf" .yaml)
mkdir -p "$out/.done"
out=$(cd "$out" && pwd)
[ -z "$download_dir" ] && download_dir=$(dirname "$out")/downloads
[ -n "$test_ids" ] && { [ -f "$test_ids" ] || die "--test-ids $test_ids: no such file"; test_ids=$(cd "$(dirname "$test_ids")" && pwd)/$(basename "$test_ids"); }

# The conf as shell variables: key a.b -> $conf_a_b; lists -> arrays. Defaults first.
conf_threads=$(nproc) conf_synth_voices=6 conf_synth_utterances=40 conf_convert_batch=8 conf_report_utterances=4
conf_prior_samples_speakers=2 conf_prior_samples_seconds=2
conf_prepare_args=() conf_align_args=() conf_train_overrides=() conf_train_diagnose_args=() conf_prior_overrides=()
conf_prior_evaluate_args=() conf_prior_samples_args=() conf_probe_args=() conf_convert_args=() conf_convert_conversion_args=() conf_score_args=()
conf_vocoder_overrides=()
conf_shell=$("$PY" "$RECIPE_DIR/local/conf.py" shell "$conf") || die "$conf: unreadable conf"
eval "$conf_shell"
conf_train_overrides+=("${extra_train[@]}")
[ ${#extra_vocoder[@]} -gt 0 ] && conf_vocoder_overrides+=("${extra_vocoder[@]}")
threads=$conf_threads
data=$out/data vqvae=$out/vqvae vocoder=$out/vocoder codes=$out/codes prior=$out/prior probe=$out/probe
convert=$out/convert score=$out/score report=$out/report
if [ -n "$prepared" ]; then
  [ -f "$prepared/manifest.jsonl" ] || die "--data $prepared: not a prepared corpus (no manifest.jsonl)"
  prepared=$(cd "$prepared" && pwd)
  [ -e "$data" ] && [ "$(cd "$data" && pwd -P)" != "$(cd "$prepared" && pwd -P)" ] && die "$data exists and is not --data $prepared"
  [ -e "$data" ] || ln -s "$prepared" "$data"
  [ -f "$out/corpus_root" ] || { [ -f "$prepared/../corpus_root" ] && cp "$prepared/../corpus_root" "$out/corpus_root"; }
  printf 'finished=%s\nseconds=0\n' "$(date -u +%FT%TZ)" > "$out/.done/1"
fi

# The corpus root: chosen by the flags, remembered in $out/corpus_root for later partial runs.
if $demo; then corpus=$out/corpus
elif [ -n "$vctk_root" ]; then corpus=$vctk_root; [ "$layout" = auto ] && layout=vctk
elif [ -n "$corpus_root" ]; then corpus=$corpus_root
elif [ -f "$out/corpus_root" ]; then corpus=$(cat "$out/corpus_root")
else corpus=""  # set by the download in stage 0
fi
if [ -n "$corpus" ] && [ -e "$corpus" ]; then corpus=$(cd "$corpus" && pwd); fi

declare -a timings=()
current=""
trap 'rc=$?; [ -n "$current" ] && [ $rc -ne 0 ] && echo "run.sh: stage $current failed (exit status $rc)" >&2' EXIT

# run_stage N NAME FUNCTION: run it unless outside --stage..--stop-stage or done already; time it.
run_stage() {
  local n=$1 name=$2 fn=$3 marker=$out/.done/$1
  [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ] && return 0
  if [ -f "$marker" ]; then
    echo "== stage $n ($name): done already, skipping (delete $marker to redo it)"
    timings+=("$n $name skipped (took $(sed -n 's/^seconds=//p' "$marker")s when it ran)")
    return 0
  fi
  echo "== stage $n ($name)"
  current="$n ($name)"
  local start
  start=$(date +%s.%N)
  "$fn"
  local seconds
  seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  current=""
  printf 'finished=%s\nseconds=%s\n' "$(date -u +%FT%TZ)" "$seconds" > "$marker"
  echo "== stage $n ($name): done in ${seconds} s"
  timings+=("$n $name ${seconds}s")
}

decoder() {  # the checkpoint that generates audio: the unit vocoder when the run has one, else the VQ-VAE
  if [ -d "$vocoder/checkpoints" ]; then echo "$vocoder"; else echo "$vqvae"; fi
}

need() {  # need PATH WHAT: a stage's input from an earlier stage must exist
  [ -e "$1" ] || die "$1 is missing ($2); run the earlier stages first (--stage ${3:-0})"
}

stage_corpus() {
  if $demo; then
    speechvq synth "$corpus" --voices "$conf_synth_voices" --utterances "$conf_synth_utterances" --seed 0
  elif [ -n "$corpus" ]; then
    need "$corpus" "the corpus root"
    echo "using the corpus at $corpus (no download)"
  else
    echo "downloading VCTK 0.92 (CC BY 4.0, CSTR, University of Edinburgh) into $download_dir"
    corpus=$("$PY" -m speechvq.data.download --out "$download_dir" | tail -n 1)
  fi
  echo "$corpus" > "$out/corpus_root"
}

tolerate_partial() {  # tolerate_partial MESSAGE COMMAND...: exit status 1 (some files failed) is a warning
  local message=$1 rc=0
  shift
  "$@" || rc=$?
  [ $rc -eq 1 ] && echo "$message"
  [ $rc -le 1 ]
}

has_transcripts() {  # VCTK's txt/ folder, or <stem>.txt files beside the audio of a folder corpus
  [ -d "$corpus/txt" ] || [ -n "$(find "$corpus" -mindepth 2 -maxdepth 2 -name '*.txt' -print -quit)" ]
}

stage_prepare() {
  [ -z "$corpus" ] && [ -f "$out/corpus_root" ] && corpus=$(cat "$out/corpus_root")
  need "$corpus" "the corpus root" 0
  local -a extra=()
  [ -n "$test_ids" ] && extra+=(--test-ids "$test_ids")
  if $demo; then
    echo "align: skipped (the synthetic corpus carries espeak-ng's own phone alignments)"
  elif ! has_transcripts; then
    echo "align: skipped (the corpus has no transcripts, so no phone alignments; stage 5 will be skipped too)"
  else
    tolerate_partial "align: some audio files were unreadable; they get no alignment" \
      speechvq align "$corpus" --out "$out/align" --layout "$layout" "${conf_align_args[@]}"
    extra+=(--alignments "$out/align")
  fi
  tolerate_partial "prepare: some files were rejected (listed in $data/rejected.tsv); going on without them" \
    speechvq prepare "$corpus" "$data" --layout "$layout" "${conf_prepare_args[@]}" "${extra[@]}"
}

stage_train() {
  need "$data/manifest.jsonl" "the prepared corpus" 1
  speechvq train "run_dir=$vqvae" "data.prepared=$data" "trainer.threads=$threads" "${conf_train_overrides[@]}"
  speechvq diagnose "$vqvae" --data "$data" --json "$vqvae/diagnose.json" --threads "$threads" \
    "${conf_train_diagnose_args[@]}"
  if [ ${#conf_vocoder_overrides[@]} -gt 0 ]; then
    echo "unit vocoder: a source-filter decoder on the frozen codes of $vqvae"
    speechvq train "run_dir=$vocoder" "data.prepared=$data" "units_from=$vqvae" "trainer.threads=$threads" \
      "${conf_vocoder_overrides[@]}"
  fi
}

stage_encode() {
  need "$vqvae/checkpoints" "the trained VQ-VAE" 2
  speechvq encode "$vqvae" --data "$data" --out "$codes" --threads "$threads"
}

stage_prior() {
  need "$codes/manifest.jsonl" "the codes of the corpus" 3
  local -a speakers
  local listing
  speechvq train-prior "run_dir=$prior" "codes=$codes" "trainer.threads=$threads" "${conf_prior_overrides[@]}"
  speechvq evaluate "$vqvae" --prior "$prior" --data "$data" --json "$prior/evaluate.json" \
    --threads "$threads" "${conf_prior_evaluate_args[@]}"
  listing=$("$PY" "$RECIPE_DIR/local/conf.py" speakers "$data" "$conf_prior_samples_speakers")
  mapfile -t speakers <<< "$listing"
  local speaker
  for speaker in "${speakers[@]}"; do
    speechvq sample "$(decoder)" "$prior" --speaker "$speaker" --seconds "$conf_prior_samples_seconds" \
      --out "$prior/samples/$speaker.wav" --threads "$threads" "${conf_prior_samples_args[@]}"
  done
}

stage_probe() {
  need "$vqvae/checkpoints" "the trained VQ-VAE" 2
  if ! "$PY" "$RECIPE_DIR/local/conf.py" has-alignments "$data"; then
    echo "probe: skipped (the prepared corpus has no phone alignments)"
    return 0
  fi
  speechvq probe "$vqvae" --data "$data" --json "$probe/probe.json" --plots "$probe" --threads "$threads" \
    "${conf_probe_args[@]}"
}

stage_convert() {
  need "$vqvae/checkpoints" "the trained VQ-VAE" 2
  [ -z "$corpus" ] && [ -f "$out/corpus_root" ] && corpus=$(cat "$out/corpus_root")
  need "$corpus" "the corpus root (for the references of score)" 0
  rm -rf "$convert/conversions" "$convert/reconstructions"  # an interrupted earlier attempt is redone whole
  "$PY" "$RECIPE_DIR/local/conf.py" pairs "$conf" "$data" "$convert"
  local targets listing
  while IFS=$'\t' read -r -u 3 targets listing; do
    tolerate_partial "convert: some sources failed (listed above); going on" \
      speechvq convert "$(decoder)" "$listing" --speaker "$targets" --out "$convert/conversions" \
      --batch "$conf_convert_batch" --threads "$threads" "${conf_convert_args[@]}" \
      "${conf_convert_conversion_args[@]}"
  done 3< "$convert/groups.tsv"
  tolerate_partial "reconstruct: some sources failed (listed above); going on" \
    speechvq reconstruct "$(decoder)" "$convert/sources.list" --out "$convert/reconstructions" \
    --batch "$conf_convert_batch" --threads "$threads" "${conf_convert_args[@]}"
  local ref_layout=()
  [ "$layout" != auto ] && ref_layout=(--layout "$layout")
  local kind
  for kind in conversions reconstructions; do
    speechvq score "$convert/$kind" --references "$corpus" "${ref_layout[@]}" --checkpoint "$vqvae" \
      --json "$score/$kind.json" --threads "$threads" "${conf_score_args[@]}"
  done
  # the ceiling: the same scoring of the target speakers' real recordings of the converted sentences
  # (the same for every model: kept when there already)
  if [ -f "$score/real.json" ]; then
    echo "score --real: $score/real.json is there already"
  elif ! speechvq score "$convert/conversions" --references "$corpus" "${ref_layout[@]}" --real \
      --json "$score/real.json" --threads "$threads" "${conf_score_args[@]}"; then
    echo "score --real: skipped (the corpus has no parallel recordings of the converted sentences)"
  fi
}

stage_report() {
  speechvq report "$out" --utterances "$conf_report_utterances"
}

echo "recipe: conf $conf, output $out, stages $stage..$stop_stage, $threads threads"
run_stage 0 corpus stage_corpus
run_stage 1 prepare stage_prepare
run_stage 2 train stage_train
run_stage 3 encode stage_encode
run_stage 4 prior stage_prior
run_stage 5 probe stage_probe
run_stage 6 convert stage_convert
run_stage 7 report stage_report

echo "== wall time per stage"
for line in "${timings[@]}"; do echo "  stage $line"; done
echo "== headline figures"
"$PY" "$RECIPE_DIR/local/conf.py" headline "$out"
[ -f "$report/index.html" ] || echo "(the samples page is written by stage 7)"
echo "samples page: $report/index.html"
