"""A synthetic parallel speech corpus spoken by espeak-ng voices, with exact phone alignments.

`synthesize_corpus` writes the speaker-folder layout that `speechvq prepare` reads::

    OUT/<voice>/<id>.wav        16 kHz mono 16-bit speech
    OUT/<voice>/<id>.TextGrid   tier "phones": espeak-ng phone names, pauses labelled "sil"
    OUT/<voice>/<id>.txt        the sentence

Every voice speaks the same sentences under the same ids (``s0001``, ``s0002``, ...), so the
corpus is parallel. Voices differ in espeak-ng variant (+m1..m7, +f1..f5, +klatt...), base
pitch and speaking rate; their folder names spell those out (``en-us_m3_p40_r165``).

Sentences come from a small grammar (`sentences`) whose templates and word lists were
written for this project (no outside source); words are chosen to cover every English
phone and are all in CMUdict, so that `speechvq align` can align the corpus too.

Phone timings come from libespeak-ng's phoneme events (C API through ctypes, synchronous
mode, ``espeakINITIALIZE_PHONEME_EVENTS``): each event's ``sample`` field is the phone's start
at espeak's native 22050 Hz. libespeak-ng keeps state between calls, so the same text spoken
twice in one process can differ by a few hundred samples; each utterance is therefore
synthesised in a fresh child process, which makes the output byte-identical from run to run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import praatio.textgrid  # noqa: F401  imported once here rather than in every forked child
from tqdm import tqdm

from speechvq.audio import SAMPLE_RATE, resample, save_wav
from speechvq.data.alignments import Phone, write_textgrid
from speechvq.errors import SpeechVQError
from speechvq.fileio import write_text_atomic

ESPEAK_LIBRARY = "libespeak-ng.so.1"
ESPEAK_SAMPLE_RATE = 22050
SILENCE = "sil"
INSTALL_HINT = "espeak-ng is not installed; install it with: sudo apt-get install espeak-ng"

# libespeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: `language` + variant, base `pitch` (espeak 0..100, 50 = the
    variant's own) and `rate` in words per minute."""

    language: str
    variant: str
    pitch: int
    rate: int

    @property
    def name(self) -> str:
        """Filesystem-safe folder and speaker name, e.g. ``en-us_m3_p40_r165``."""
        return f"{self.language}_{self.variant}_p{self.pitch}_r{self.rate}"

    @property
    def espeak_name(self) -> str:
        """The name espeak-ng's SetVoiceByName understands, e.g. ``en-us+m3``."""
        return f"{self.language}+{self.variant}"


#: Voices in the order `--voices N` takes them: the first ones alternate male and female
#: variants with spread-out pitch and rate, so that even a few voices are clearly different.
VOICES: tuple[Voice, ...] = (
    Voice("en-us", "m3", 40, 165),      # median F0 about  90 Hz
    Voice("en-us", "f2", 65, 175),      #                 220 Hz
    Voice("en-us", "m7", 10, 150),      #                  75 Hz
    Voice("en-us", "f4", 80, 190),      #                 240 Hz
    Voice("en-us", "klatt", 70, 160),   #                 120 Hz
    Voice("en-us", "f1", 40, 140),      #                 155 Hz
    Voice("en-us", "m1", 60, 185),      #                 100 Hz
    Voice("en-us", "f5", 90, 155),      #                 310 Hz
    Voice("en-us", "m5", 20, 200),      #                  75 Hz
    Voice("en-us", "f3", 55, 170),      #                 210 Hz
    Voice("en-us", "klatt3", 85, 145),  #                 140 Hz
    Voice("en-us", "m2", 30, 180),      #                  80 Hz
    Voice("en-us", "m4", 50, 195),      #                  90 Hz
    Voice("en-us", "croak", 35, 150),   #                  95 Hz
    Voice("en-us", "klatt2", 15, 175),  #                  75 Hz
    Voice("en-us", "m6", 75, 135),      #                 130 Hz
)
MAX_VOICES = len(VOICES)

# --- sentences --------------------------------------------------------------------------

_ADJECTIVES = (
    "bright quiet heavy yellow ancient tiny gentle rough smooth frozen purple honest jolly "
    "curious shiny brave thick narrow lazy eager hungry pleasant royal strange tall warm cheap "
    "usual loyal odd vivid wooden golden noisy ugly sharp foggy nervous"
).split()
_NOUNS = (
    "garden teacher bridge window river orange pocket singer ladder monkey treasure village "
    "cousin bottle engine kitchen journey mountain feather judge boy toy coin church whistle "
    "pillow cabbage dolphin shepherd beach farmer violin zebra yacht puzzle lawyer chair sugar "
    "author ocean parrot closet jacket wagon mirror"
).split()
_PLURALS = (
    "apples horses pencils bridges stars children shoes matches boxes voices letters cookies "
    "oysters sheep wolves tickets"
).split()
# (base form, past tense)
_VERBS = tuple(tuple(pair.split("/")) for pair in (
    "push/pushed carry/carried paint/painted find/found throw/threw bring/brought watch/watched "
    "measure/measured visit/visited choose/chose judge/judged borrow/borrowed fix/fixed "
    "follow/followed leave/left sell/sold hide/hid wash/washed catch/caught enjoy/enjoyed "
    "describe/described move/moved thank/thanked join/joined open/opened draw/drew buy/bought "
    "keep/kept"
).split())
_PREPOSITIONS = "near behind under beside across beyond above toward inside around".split()
_NAMES = ("Alice Bernard Chloe Daniel Eva Felix George Hannah Isaac Julia Kevin Laura Martin "
          "Nora Oscar Paula Ruth Simon Thomas Victor Walter Yvonne Zachary").split()
_NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty thirty".split()
_TIMES = ("this morning|after lunch|on Thursday|last year|every evening|at midnight|yesterday|"
          "in the autumn|during the storm|before the show").split("|")
_MANNER = "quickly slowly carefully quietly gladly rarely usually loudly".split()
_DEGREE = "very rather quite really unusually surprisingly".split()

_TEMPLATES = (
    "The {adj} {noun} {past} {prep} the {noun2}.",
    "{Name} {past} the {adj} {noun} {time}.",
    "{Name} counted {number} {plural} {prep} the {noun}.",
    "Why did the {noun} {base} the {adj} {noun2}?",
    "{Time}, {name} {manner} {past} her {adj} {noun}.",
    "Please {base} the {noun} {prep} the {adj} {noun2}.",
    "If the {noun} is {adj}, {name} will {base} it {manner}.",
    "{Name} said that the {noun} was {degree} {adj}.",
    "Our {noun} and their {noun2} {past} {number} {plural} {time}.",
    "Does the {adj} {noun} {base} {plural} {prep} the {noun2}?",
)


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct English sentences drawn from the built-in grammar with `seed`.

    The same (count, seed) always gives the same list, and a larger count extends a smaller
    one with the same seed (the first sentences stay the same).
    """
    rng = random.Random(seed)
    found: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise SpeechVQError(f"cannot make {count} distinct sentences from the built-in grammar")
        sentence = _fill(rng.choice(_TEMPLATES), rng)
        if sentence not in seen:
            seen.add(sentence)
            found.append(sentence)
    return found


def _fill(template: str, rng: random.Random) -> str:
    noun, noun2 = rng.sample(_NOUNS, 2)
    base, past = rng.choice(_VERBS)
    name, time = rng.choice(_NAMES), rng.choice(_TIMES)
    return template.format(
        adj=rng.choice(_ADJECTIVES), noun=noun, noun2=noun2, base=base, past=past,
        prep=rng.choice(_PREPOSITIONS), name=name, Name=name, time=time, Time=time[0].upper() + time[1:],
        number=rng.choice(_NUMBERS), plural=rng.choice(_PLURALS), manner=rng.choice(_MANNER),
        degree=rng.choice(_DEGREE),
    )


def utterance_ids(count: int) -> list[str]:
    """Utterance ids (file stems) ``s0001`` ... shared by every voice."""
    return [f"s{i:04d}" for i in range(1, count + 1)]


# --- libespeak-ng -------------------------------------------------------------------------

class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT: `sample` is the event's position in the output at 22050 Hz."""

    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


def load_espeak(library: str = ESPEAK_LIBRARY) -> ctypes.CDLL:
    """Load libespeak-ng (by soname, then through ctypes.util.find_library) and declare the
    C signatures used here. Loading does not initialise it.

    Raises SpeechVQError with the install command when it cannot be found.
    """
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        found = ctypes.util.find_library("espeak-ng") if library == ESPEAK_LIBRARY else None
        if not found:
            raise SpeechVQError(f"{INSTALL_HINT} ({library} not found)") from None
        lib = ctypes.CDLL(found)
    c_int, c_uint = ctypes.c_int, ctypes.c_uint
    lib.espeak_Initialize.argtypes = [c_int, c_int, ctypes.c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint,
                                 ctypes.POINTER(c_uint), ctypes.c_void_p]
    lib.espeak_Synth.restype = c_int
    return lib


def synthesize(text: str, voice: Voice, library: str = ESPEAK_LIBRARY) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Speak `text` with `voice` in this process.

    Returns (audio (n,) int16 at 22050 Hz, phoneme events as (start sample at 22050 Hz,
    espeak phone name) in order). Call it at most once per process, and not in a process
    that later runs `synthesize_corpus`, whose forked children must find libespeak-ng
    uninitialised (see the module docstring).
    """
    lib = load_espeak(library)
    if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS) != ESPEAK_SAMPLE_RATE:
        raise SpeechVQError(f"{library}: espeak-ng did not initialise at {ESPEAK_SAMPLE_RATE} Hz")
    if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
        raise SpeechVQError(f"espeak-ng has no voice {voice.espeak_name!r}")
    lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
    lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)

    chunks: list[np.ndarray] = []
    events: list[tuple[int, str]] = []

    def on_audio(wav, num_samples, event_array) -> int:
        if num_samples > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while event_array[i].type != _EVENT_LIST_TERMINATED:
            event = event_array[i]
            if event.type == _EVENT_PHONEME:
                events.append((int(event.sample), bytes(event.id.string).split(b"\0")[0].decode("utf-8")))
            i += 1
        return 0

    callback = _SynthCallback(on_audio)  # kept alive in this frame while espeak calls it
    lib.espeak_SetSynthCallback(callback)
    data = text.encode("utf-8")
    status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if status != 0:
        raise SpeechVQError(f"espeak-ng failed (status {status}) on {text!r}")
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return audio.astype(np.int16, copy=False), events


def events_to_phones(events: list[tuple[int, str]], num_samples: int, sample_rate: int = ESPEAK_SAMPLE_RATE,
                     duration_s: float | None = None) -> list[Phone]:
    """Phone intervals covering the audio from phoneme events (start sample, name).

    Each phone lasts from its event to the next one, the last to `duration_s` (default
    num_samples / sample_rate; pass the resampled audio's duration so that the intervals
    tile it exactly). espeak's pauses (names starting with "_") and the stretch before the
    first phone are labelled "sil"; consecutive silences are merged, empty intervals dropped.
    """
    starts = [min(max(sample, 0), num_samples) for sample, _ in events]
    names = [SILENCE if name.startswith("_") else name for _, name in events]
    if not starts or starts[0] > 0:
        starts.insert(0, 0)
        names.insert(0, SILENCE)
    bounds = starts + [num_samples]
    phones: list[Phone] = []
    for name, start, end in zip(names, bounds[:-1], bounds[1:]):
        if end <= start:
            continue
        if phones and name == SILENCE and phones[-1].phone == SILENCE:
            phones[-1] = Phone(SILENCE, phones[-1].start_s, end / sample_rate)
        else:
            phones.append(Phone(name, start / sample_rate, end / sample_rate))
    if phones and duration_s is not None:
        phones[-1] = Phone(phones[-1].phone, phones[-1].start_s, max(duration_s, phones[-1].start_s))
    return phones


# --- the corpus ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthResult:
    """What `synthesize_corpus` did: the voice (folder) names, utterances written and skipped."""

    voices: list[str]
    written: int
    skipped: int


@dataclass(frozen=True)
class _Job:
    text: str
    voice: Voice
    folder: Path
    utterance_id: str
    library: str

    def paths(self) -> tuple[Path, Path, Path]:
        stem = self.folder / self.utterance_id
        return stem.with_suffix(".wav"), stem.with_suffix(".TextGrid"), stem.with_suffix(".txt")

    def done(self) -> bool:
        """True if all three files exist; SpeechVQError if they hold another sentence."""
        if not all(p.is_file() for p in self.paths()):
            return False
        text_path = self.paths()[2]
        if text_path.read_text(encoding="utf-8").strip() != self.text:
            raise SpeechVQError(f"{text_path}: holds another sentence (made with other --seed or "
                                "--utterances?); synthesise into an empty folder")
        return True


def _run_job(job: _Job) -> str:
    """Synthesise one utterance and write its three files (wav last). Runs in a child process."""
    audio, events = synthesize(job.text, job.voice, job.library)
    if audio.size == 0:
        raise SpeechVQError(f"espeak-ng produced no audio for {job.text!r} with {job.voice.espeak_name}")
    wav = resample(audio.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
    wav_path, grid_path, text_path = job.paths()
    duration_s = wav.size / SAMPLE_RATE
    phones = events_to_phones(events, audio.size, duration_s=duration_s)
    write_textgrid(grid_path, phones, duration_s)
    write_text_atomic(text_path, job.text + "\n")
    save_wav(wav_path, wav, SAMPLE_RATE)
    return job.utterance_id


def synthesize_corpus(out: str | os.PathLike, voices: int = 6, utterances: int = 40, seed: int = 0,
                      workers: int = 2, library: str = ESPEAK_LIBRARY, progress: bool = True) -> SynthResult:
    """Write a parallel corpus of `utterances` sentences (chosen by `seed`) per voice for the
    first `voices` of `VOICES` under `out` (layout in the module docstring).

    Utterances whose three files already exist are skipped, so an interrupted run can be
    resumed; every file is written atomically. `workers` child processes run at once, each
    synthesising one utterance. Raises SpeechVQError if libespeak-ng (`library`) is missing
    or an argument is out of range.
    """
    if not 1 <= voices <= MAX_VOICES:
        raise SpeechVQError(f"--voices must be between 1 and {MAX_VOICES}, got {voices}")
    if utterances < 1:
        raise SpeechVQError(f"--utterances must be at least 1, got {utterances}")
    if workers < 1:
        raise SpeechVQError(f"--workers must be at least 1, got {workers}")
    load_espeak(library)  # fail early, before any process starts; loading leaves espeak uninitialised
    out = Path(out)
    chosen = VOICES[:voices]
    texts = sentences(utterances, seed)
    jobs = [_Job(text, voice, out / voice.name, uid, library)
            for voice in chosen for uid, text in zip(utterance_ids(utterances), texts)]
    todo = [job for job in jobs if not job.done()]
    if todo:
        # A forked child starts from this process's state, in which espeak was never
        # initialised; one task per child gives every utterance a fresh libespeak-ng.
        context = multiprocessing.get_context("fork")
        with context.Pool(min(workers, len(todo)), maxtasksperchild=1) as pool:
            for _ in tqdm(pool.imap_unordered(_run_job, todo), total=len(todo), desc="synth",
                          unit="utt", disable=not progress):
                pass
    return SynthResult(voices=[v.name for v in chosen], written=len(todo), skipped=len(jobs) - len(todo))
