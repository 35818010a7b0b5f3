#!/usr/bin/env bash
# One-shot check of the GPU paths, for the first minutes a GPU is lent (at most ~8 minutes on one GPU):
#
#   pytest_gpu      pytest -m gpu (the CUDA-only tests)
#   bench_generate  generation speed: reference and paper decoders, batch 1/16/256, with and
#                   without the CUDA graph, μ-law and mixture of logistics
#   bench_train     training speed: reference and paper presets, fp32 and bf16
#   train_bf16      a 60-step bf16 training on a generated corpus, stopped at step 30 and resumed
#   convert         a batch-256 conversion (`speechvq convert --batch 256`) with the trained run
#   train_compile   a compiled tiny training (trainer.compile=true)
#
# Prints `name=value` lines (`<part>=ok|failed|skipped (no CUDA)`, figures, seconds) and exits
# non-zero if any part failed; the log of a failed part is printed to stderr. On a machine without
# CUDA it runs everything that does not need CUDA at small sizes (a few minutes) and prints
# `<part>=skipped (no CUDA)` for the rest.
#
#   tools/gpu_check.sh                      # logs and runs in a temporary directory
#   GPU_CHECK_DIR=/tmp/check tools/gpu_check.sh
#   GPU_CHECK_QUICK=1 tools/gpu_check.sh    # smallest sizes (the CPU test of this script)
#
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_DIR (work directory,
# kept), GPU_CHECK_QUICK (1: smallest sizes, tiny decoders and presets only).
# Training is called through the CLI only, so this script does not depend on the trainer's modules.

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
WORK=${GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$WORK/logs" || exit 2
QUICK=${GPU_CHECK_QUICK:-0}
export PYTHONUNBUFFERED=1

if ! CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>"$WORK/logs/torch.log"); then
    echo "torch=failed" ; cat "$WORK/logs/torch.log" >&2; exit 1
fi
FAILED=0
echo "work_dir=$WORK"
echo "cuda=$CUDA"
echo "quick=$QUICK"
if [[ $CUDA == 1 ]]; then
    echo "gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))")"
    DEVICE=cuda
else
    DEVICE=cpu
fi

# part NAME CMD...: run CMD with its output in logs/NAME.log; print its name=value lines, NAME=ok|failed, seconds.
part() {
    local name=$1; shift
    local log="$WORK/logs/$name.log" start=$SECONDS rc
    "$@" >"$log" 2>&1
    rc=$?
    grep -E '^[A-Za-z0-9_.]+=' "$log" | grep -vE '^(device|samples|threads|config|output|batch|preset|compile)=' \
        | sed "s/^/${name}_/"
    if [[ $rc == 0 ]]; then
        echo "$name=ok"
    else
        echo "$name=failed"
        echo "----- $name failed (exit $rc); last lines of $log:" >&2
        tail -n 40 "$log" >&2
        FAILED=1
    fi
    echo "${name}_seconds=$((SECONDS - start))"
}

skip() {
    echo "$1=skipped (no CUDA)"
}

# ---------------------------------------------------------------------------------------------
# Sizes

if [[ $CUDA == 1 ]]; then
    GEN_CONFIGS=reference,paper; GEN_BATCHES=1,16,256; GEN_SAMPLES=1600
    TRAIN_PRESETS="reference paper"; TRAIN_ARGS=(--steps 5 --warmup 2 --batch-size 8 --segment 4096)
    MODEL=(model=tiny data.batch_size=8 data.segment_samples=4096); CONVERT_FILES=256
elif [[ $QUICK == 1 ]]; then
    GEN_CONFIGS=tiny; GEN_BATCHES=1,4; GEN_SAMPLES=64
    TRAIN_PRESETS="tiny"; TRAIN_ARGS=(--steps 1 --warmup 1 --batch-size 1 --segment 1024 --threads 1)
    MODEL=(); CONVERT_FILES=4
else
    GEN_CONFIGS=reference,paper; GEN_BATCHES=1,16; GEN_SAMPLES=128
    TRAIN_PRESETS="reference paper"; TRAIN_ARGS=(--steps 1 --warmup 1 --batch-size 1 --segment 1024)
    MODEL=(); CONVERT_FILES=16
fi
# The micro model of the CPU tests (tests/vqvae_testutils.py) where there is no GPU.
MICRO=(model.num_codes=32 model.code_dim=8 model.encoder.channels=8 model.encoder.res_channels=8
       model.encoder.num_res_blocks=1 model.decoder.speaker_dim=4 model.decoder.cond_channels=8
       model.decoder.residual_channels=8 model.decoder.gate_channels=16 model.decoder.skip_channels=16
       model.decoder.layers=4 model.decoder.stacks=1 data.batch_size=2 data.segment_samples=1024)
if [[ $CUDA != 1 ]]; then MODEL=("${MICRO[@]}"); fi

# ---------------------------------------------------------------------------------------------
# pytest -m gpu

if [[ $CUDA == 1 ]]; then
    part pytest_gpu "$PY" -m pytest -m gpu -q -p no:cacheprovider tests
else
    skip pytest_gpu
fi

# ---------------------------------------------------------------------------------------------
# Benchmarks

GRAPH=()
[[ $CUDA == 1 ]] && GRAPH=(--cuda-graph both)
part bench_generate "$PY" tools/bench_generate.py --device "$DEVICE" --config "$GEN_CONFIGS" --output mulaw,mol \
    --batch "$GEN_BATCHES" --samples "$GEN_SAMPLES" --naive-samples 0 "${GRAPH[@]}"

bench_train() {
    local preset precision
    for preset in $TRAIN_PRESETS; do
        for precision in fp32 bf16; do
            "$PY" tools/bench_train.py --device "$DEVICE" --preset "$preset" --precision "$precision" "${TRAIN_ARGS[@]}" \
                | sed -n "s/^samples_per_second=/${preset}_${precision}_samples_per_second=/p" || return 1
        done
    done
}
part bench_train bench_train

# ---------------------------------------------------------------------------------------------
# Training through the CLI: a generated corpus, 30 steps, then resumed to 60 (bf16)

make_corpus() {
    "$PY" - "$WORK/corpus" "$CONVERT_FILES" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

root, count = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
t = np.arange(4000) / 16000
for s, speaker in enumerate(["alice", "bob"]):
    for u in range(6):  # training corpus: chirps with noise, distinct per speaker and utterance
        f0 = 150 + 40 * s + 25 * u
        wav = 0.4 * np.sin(2 * np.pi * (f0 * t + 200 * t ** 2)) + 0.02 * rng.standard_normal(t.size)
        path = root / "src" / speaker / f"u{u}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wav.astype(np.float32), 16000)
for i in range(count):  # conversion inputs: short sines of varied lengths
    n = 800 + 37 * (i % 23)
    wav = 0.3 * np.sin(2 * np.pi * (120 + 3 * i) * np.arange(n) / 16000)
    path = root / "convert_in" / f"c{i:03d}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), 16000)
print(f"files={12 + count}")
EOF
    "$PY" -m speechvq prepare "$WORK/corpus/src" "$WORK/corpus/prep" --workers 1 --valid-fraction 0.2 \
        --test-fraction 0.2
}

checkpoint_step() {  # checkpoint_step RUN -> the step of RUN/checkpoints/last.pt
    "$PY" -c "import sys, torch; print(torch.load(sys.argv[1], map_location='cpu', weights_only=True)['step'])" \
        "$1/checkpoints/last.pt"
}

TRAIN_COMMON=(data.prepared="$WORK/corpus/prep" trainer=debug trainer.device=auto trainer.progress=false
              trainer.warmup_steps=5 trainer.log_every=10 trainer.valid_every=30 trainer.checkpoint_every=30
              data.valid_samples=4096 data.max_valid_utterances=2 "${MODEL[@]}")
[[ $CUDA != 1 ]] && TRAIN_COMMON+=(trainer.threads=1)

train_bf16() {
    local run="$WORK/run_bf16" step
    "$PY" -m speechvq train run_dir="$run" "${TRAIN_COMMON[@]}" trainer.precision=bf16 trainer.max_steps=30 \
        || return 1
    step=$(checkpoint_step "$run") || return 1
    echo "first_step=$step"
    [[ $step == 30 ]] || { echo "expected step 30 after the first run, got $step"; return 1; }
    "$PY" -m speechvq train run_dir="$run" "${TRAIN_COMMON[@]}" trainer.precision=bf16 trainer.max_steps=60 \
        2>&1 | tee "$WORK/logs/train_bf16_resume.log" || return 1
    grep -qi "resumed from" "$WORK/logs/train_bf16_resume.log" \
        || { echo "the second run did not resume from the first"; return 1; }
    step=$(checkpoint_step "$run") || return 1
    echo "resumed_step=$step"
    [[ $step == 60 ]] || { echo "expected step 60 after resuming, got $step"; return 1; }
}

convert() {
    local out="$WORK/converted" count
    "$PY" -m speechvq convert "$WORK/run_bf16" "$WORK/corpus/convert_in" --speaker bob --out "$out" \
        --batch "$CONVERT_FILES" --quiet --device "$DEVICE" || return 1
    count=$(find "$out" -name '*.wav' | wc -l)
    echo "files=$count"
    [[ $count == "$CONVERT_FILES" ]] || { echo "expected $CONVERT_FILES outputs, got $count"; return 1; }
}

train_compile() {
    local run="$WORK/run_compile" step
    "$PY" -m speechvq train run_dir="$run" "${TRAIN_COMMON[@]}" trainer.compile=true trainer.max_steps=4 \
        trainer.valid_every=4 trainer.checkpoint_every=4 || return 1
    step=$(checkpoint_step "$run") || return 1
    echo "step=$step"
    [[ $step == 4 ]]
}

part corpus make_corpus
if [[ -f "$WORK/corpus/prep/manifest.jsonl" ]]; then
    part train_bf16 train_bf16
    if [[ -f "$WORK/run_bf16/checkpoints/last.pt" ]]; then
        part convert convert
    else
        echo "convert=failed"; echo "----- convert: no trained run to convert with" >&2; FAILED=1
    fi
else
    echo "train_bf16=failed"; echo "convert=failed"; FAILED=1
fi
if [[ $CUDA == 1 ]]; then
    part train_compile train_compile
else
    skip train_compile
fi

echo "failed=$FAILED"
exit "$FAILED"
