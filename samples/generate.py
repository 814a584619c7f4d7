#!/usr/bin/env python3
"""Generate the audiovis demo dataset: synthetic songs with known concepts and
synthetic listeners whose play counts depend on those concepts (plus an
inaudible "artist/hype" factor).

Usage (from the repository root):

    python samples/generate.py --seed 0            # everything (audio + tables)
    python samples/generate.py --seed 0 --no-audio # tables only (fast)

System requirements for the audio: ``mma`` (Musical MIDI Accompaniment),
``fluidsynth``, the General MIDI soundfont ``fluid-soundfont-gm``
(/usr/share/sounds/sf2/FluidR3_GM.sf2) and ``oggenc`` (OGG Vorbis encoder, from vorbis-tools), e.g.

    apt-get install -y --no-install-recommends mma fluidsynth fluid-soundfont-gm vorbis-tools

Python requirements: numpy, soundfile.

Everything is derived from a single ``--seed``.  Song specifications and the
listener model use independent child streams of ``numpy.random.SeedSequence``;
MMA's own humanisation randomness is pinned with ``RndSeed``; fluidsynth
renders deterministically.  See samples/README.md for the full description.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

SR = 22050
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Musical vocabulary
# --------------------------------------------------------------------------
# name -> (MMA groove, MMA groove with sustained pad, beats per bar, medium tempo)
# BPM is MMA's "Tempo" (quarter notes per minute).  Polka, Ska and RagTime are
# written in 4/4 by MMA and are meant to be played at double tempo.
GROOVES = {
    "bossanova": ("BossaNova", "BossaNovaSus", 4, 125),
    "swing": ("SwingWalk", "SwingWalkSus", 4, 140),   # with its walking bass (quarter notes)
    "rock": ("BasicRock", "BasicRockSus", 4, 125),
    "polka": ("Polka", "PolkaSus", 4, 190),
    "waltz": ("Waltz", "WaltzSus", 3, 120),
    "ska": ("Ska", "SkaSus", 4, 165),
    "ragtime": ("RagTime", "RagtimeSus", 4, 175),
    "bluegrass": ("BlueGrass", "BlueGrassSus", 4, 140),
    "salsa": ("Salsa", "SalsaSus", 4, 165),
    "tango": ("Tango", "TangoCleanSus", 4, 115),
}
# name -> (MMA / General MIDI voice, lowest MIDI note, highest MIDI note,
#          MMA "Solo Volume" in percent).  Volumes balance the leads: with them
# the lead is roughly 0 to +6 dB above the accompaniment (velocity is capped
# at 127, i.e. 141 %, for the quieter voices).
LEADS = {
    "choir": ("ChoirAahs", 60, 77, 141),
    "distortion_guitar": ("DistortionGuitar", 55, 76, 95),
    "flute": ("Flute", 72, 91, 118),
    "tenor_sax": ("TenorSax", 50, 70, 112),
    "violin": ("Violin", 67, 88, 141),
    "trumpet": ("Trumpet", 60, 79, 141),
}
# MIDI channel volume (CC7; fluidsynth's default is 100) for leads still too quiet at velocity 127: the
# violin is the quietest lead and the easiest to mistake for the accompaniment.
LEAD_CHANNEL_VOLUME = {"violin": 127}
NO_LEAD = "none"
P_NO_LEAD = 0.15
P_LATE_ENTRY = 0.40           # among songs with a lead
LATE_ENTRY_BARS = (2, 3, 4, 5)  # 1-based bar at which a late lead enters
TEMPO_CLASSES = ("slow", "medium", "fast")
# a class is the groove's medium tempo times this factor, +-TEMPO_JITTER: adjacent classes are 1.25x apart,
# audibly slower or faster (a listener hears "fast" as absolute pace, not as a third of a range)
TEMPO_FACTOR = {"slow": 0.8, "medium": 1.0, "fast": 1.25}
TEMPO_JITTER = 0.04
# keys: C, D and E, major or minor.  No two of these six keys share their pitch classes (no relative
# major/minor pair: A minor, B minor, C# minor, Eb, F and G major are left out), so mode is audible as which
# pitches sound, which a model without pitch-shift invariance (mel bins as channels) can learn from 600 songs;
# with all 12 keys mode is a relation between pitches, and neither audio model heard it (samples/README.md).
KEYS = (0, 2, 4)
MODES = ("major", "minor")
DENSITIES = ("sparse", "dense")
NOTE_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
# Progressions: (semitones above the tonic, chord suffix), one chord per bar.
PROGRESSIONS = {
    "major": [
        [(0, ""), (7, ""), (9, "m"), (5, "")],          # I V vi IV
        [(0, ""), (9, "m"), (5, ""), (7, "7")],         # I vi IV V7
        [(0, ""), (5, ""), (7, "7"), (0, "")],          # I IV V7 I
        [(2, "m7"), (7, "7"), (0, "maj7"), (0, "maj7")],  # ii7 V7 Imaj7
        [(0, ""), (5, ""), (0, ""), (7, "7")],          # I IV I V7
    ],
    "minor": [
        [(0, "m"), (5, "m"), (7, "7"), (0, "m")],       # i iv V7 i
        [(0, "m"), (8, ""), (3, ""), (10, "")],         # i VI III VII
        [(0, "m"), (5, "m"), (10, ""), (3, "")],        # i iv VII III
        [(0, "m"), (10, ""), (8, ""), (7, "7")],        # i VII VI V7
        [(0, "m7"), (5, "m7"), (0, "m7"), (7, "7")],    # i7 iv7 i7 V7
    ],
}
CHORD_TONES = {"": [0, 4, 7], "m": [0, 3, 7], "7": [0, 4, 7, 10],
               "maj7": [0, 4, 7, 11], "m7": [0, 3, 7, 10]}
# Melody rhythms in eighth notes per bar (sum = 2 * beats).
RHYTHMS = {
    (4, "sparse"): [[4, 4], [4, 2, 2], [2, 2, 4], [2, 2, 2, 2], [6, 2], [3, 1, 4]],
    (4, "dense"): [[1] * 8, [2, 1, 1, 2, 1, 1], [1, 1, 2, 1, 1, 2],
                   [1, 1, 1, 1, 2, 2], [2, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 2]],
    (3, "sparse"): [[2, 2, 2], [4, 2], [6], [3, 1, 2]],
    (3, "dense"): [[1] * 6, [2, 1, 1, 1, 1], [1, 1, 2, 1, 1], [1, 1, 1, 1, 2]],
}
CADENCE = {(4, "sparse"): [6, -2], (4, "dense"): [2, 2, 4],
           (3, "sparse"): [4, -2], (3, "dense"): [2, 4]}   # negative = rest
DUR = {1: "8", 2: "4", 3: "4.", 4: "2", 6: "2.", 8: "1"}
# Accompaniment instruments (MMA / General MIDI voices), drawn per song independently of the groove, so
# that a groove is its rhythm and drum kit, not its instruments (MMA's grooves each come with their own:
# accordion and tuba in polka, banjo in bluegrass, bandoneon in tango...).  None is a lead instrument or of
# a lead's family (no string pad next to the violin, no vibraphone next to the flute).
HARMONY = {"piano": "Piano1", "rhodes": "RhodesPiano", "jazz_guitar": "JazzGuitar",
           "nylon_guitar": "NylonGuitar", "harpsichord": "HarpsiChord"}  # Chord, Arpeggio, Scale, Plectrum
BASS = {"acoustic_bass": "AcousticBass", "fingered_bass": "FingeredBass", "picked_bass": "PickedBass",
        "fretless_bass": "FretlessBass"}                                   # Bass, Walk
PAD = {"warm_pad": "WarmPad", "organ": "Organ1", "halo_pad": "HaloPad",
       "sweep_pad": "SweepPad"}                                            # Chord-Sus (dense songs)
MUSIC_SECONDS = (19.0, 19.6)   # target length of the chord chart, before the 1 s tail
TOTAL_SECONDS = (20.0, 21.0)   # hard limits of a song's length (tail included)
TAIL_SECONDS = 1.0             # reverb/release tail kept (faded out)
TARGET_RMS_DBFS = -20.0
LOWPASS_KHZ = 8.0              # Vorbis encoder lowpass
PEAK_LIMIT = 0.89


# --------------------------------------------------------------------------
# Song specifications
# --------------------------------------------------------------------------
def balanced(rng, values, n, probs=None):
    """n labels with (almost) exact proportions, in random order."""
    values = list(values)
    probs = np.full(len(values), 1 / len(values)) if probs is None else np.asarray(probs)
    counts = np.floor(probs * n).astype(int)
    rest = n - counts.sum()
    if rest:
        extra = rng.choice(len(values), size=rest, replace=False, p=probs)
        counts[extra] += 1
    out = np.repeat(np.arange(len(values)), counts)
    rng.shuffle(out)
    return [values[i] for i in out]


def make_melody(rng, beats, density, n_bars, entry_bar, chords, tonic, mode, lo, hi):
    """Return a list (per bar) of MMA solo riffs (None = no lead in that bar)."""
    scale = SCALES[mode]
    pitches = [p for p in range(lo, hi + 1) if (p - tonic) % 12 in scale]
    riffs = [None] * n_bars
    idx = len(pitches) // 2
    motif = None
    for b in range(entry_bar - 1, n_bars):
        pos = (b - (entry_bar - 1)) % 4          # position in a 4-bar phrase
        root, qual = chords[b]
        tones = {(tonic + root + t) % 12 for t in CHORD_TONES[qual]}
        last = b == n_bars - 1
        if pos == 3 or last:
            rhythm = CADENCE[(beats, density)]
        elif pos == 0 or motif is None:
            motif = list(RHYTHMS[(beats, density)][rng.integers(len(RHYTHMS[(beats, density)]))])
            rhythm = motif
        elif pos == 2:
            rhythm = motif                       # answer re-uses the motif rhythm
        else:
            opts = RHYTHMS[(beats, density)]
            rhythm = list(opts[rng.integers(len(opts))])
        notes = []
        n_sounding = sum(1 for d in rhythm if d > 0)
        k = 0
        for d in rhythm:
            if d < 0:
                notes.append(f"{DUR[-d]} r")
                continue
            k += 1
            step = rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3], p=[.1, .22, .0, .06, .22, .2, .1, .05, .05])
            idx = int(np.clip(idx + step, 0, len(pitches) - 1))
            if idx in (0, len(pitches) - 1):       # bounce off the range edges
                idx = int(np.clip(idx + (2 if idx == 0 else -2), 0, len(pitches) - 1))
            strong = k == 1 or (pos == 3 or last) and k == n_sounding
            if strong:                              # snap to the nearest chord tone
                cands = [i for i, p in enumerate(pitches) if p % 12 in tones]
                if (pos == 3 or last) and k == n_sounding:
                    cands = [i for i in cands if pitches[i] % 12 == (tonic + root) % 12] or cands
                idx = min(cands, key=lambda i: (abs(i - idx), i))
            notes.append(f"{DUR[d]} {pitches[idx]}")
        riffs[b] = "{" + "; ".join(notes) + ";}"
    return riffs


def make_specs(seed, n_songs, accompaniment="random"):
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    grooves = balanced(rng, GROOVES, n_songs)
    leads = balanced(rng, [NO_LEAD] + list(LEADS), n_songs,
                     [P_NO_LEAD] + [(1 - P_NO_LEAD) / len(LEADS)] * len(LEADS))
    tempos = balanced(rng, TEMPO_CLASSES, n_songs)
    modes = balanced(rng, MODES, n_songs)
    dens = balanced(rng, DENSITIES, n_songs)
    keys = balanced(rng, KEYS, n_songs)
    if accompaniment == "random":
        harmonies = balanced(rng, HARMONY, n_songs)
        basses = balanced(rng, BASS, n_songs)
        pads = balanced(rng, PAD, n_songs)
    specs = []
    for i in range(n_songs):
        g, lead, tc, mode, den, tonic = grooves[i], leads[i], tempos[i], modes[i], dens[i], keys[i]
        mma_groove, mma_sus, beats, medium = GROOVES[g]
        bpm = int(round(medium * TEMPO_FACTOR[tc] * rng.uniform(1 - TEMPO_JITTER, 1 + TEMPO_JITTER)))
        bar_s = beats * 60.0 / bpm
        target = rng.uniform(*MUSIC_SECONDS)
        n_bars = int(round(target / bar_s))
        while n_bars * bar_s + TAIL_SECONDS > TOTAL_SECONDS[1]:
            n_bars -= 1
        while n_bars * bar_s + TAIL_SECONDS < TOTAL_SECONDS[0]:
            n_bars += 1
        prog = PROGRESSIONS[mode][rng.integers(len(PROGRESSIONS[mode]))]
        chords = [prog[b % 4] for b in range(n_bars)]
        chords[-1] = (0, "m" if mode == "minor" else "")     # end on the tonic
        entry_bar = 1
        if lead != NO_LEAD and rng.random() < P_LATE_ENTRY:
            entry_bar = int(rng.choice(LATE_ENTRY_BARS))
        riffs = [None] * n_bars
        if lead != NO_LEAD:
            _, lo, hi, _ = LEADS[lead]
            riffs = make_melody(rng, beats, den, n_bars, entry_bar, chords, tonic, mode, lo, hi)
        song_id = f"S{i + 1:04d}"
        lines = [f"// {song_id}: {g} / {lead} / {tc} {bpm} bpm / {NOTE_NAMES[tonic]} {mode} / {den}",
                 f"RndSeed {seed * 100003 + i + 1}",
                 f"Tempo {bpm}",
                 f"Groove {mma_sus if den == 'dense' else mma_groove}"]
        extra = {}
        if accompaniment == "random":   # the accompaniment's instruments drawn per song, not by the groove
            lines += [f"AllTracks Chord Arpeggio Scale Plectrum Voice {HARMONY[harmonies[i]]}",
                      f"AllTracks Bass Walk Voice {BASS[basses[i]]}",
                      f"Chord-Sus Voice {PAD[pads[i]]}"]
            extra = dict(harmony=harmonies[i], bass=basses[i], pad=pads[i] if den == "dense" else "")
        if lead != NO_LEAD:
            lines += [f"Solo Voice {LEADS[lead][0]}", f"Solo Volume {LEADS[lead][3]}", "Solo Articulate 90"]
            if lead in LEAD_CHANNEL_VOLUME:
                lines.append(f"Solo MidiVolume {LEAD_CHANNEL_VOLUME[lead]}")
        for b in range(n_bars):
            root, qual = chords[b]
            name = NOTE_NAMES[(tonic + root) % 12] + qual
            lines.append(f"{b + 1} {name}" + (f" {riffs[b]}" if riffs[b] else ""))
        music_s = n_bars * bar_s
        specs.append(dict(
            song_id=song_id, file=f"audio/{song_id}.ogg", groove=g, lead=lead, tempo_class=tc,
            bpm=bpm, key=NOTE_NAMES[tonic], mode=mode, density=den, **extra,
            lead_entry_s="" if lead == NO_LEAD else round((entry_bar - 1) * bar_s, 3),
            duration_s=round(music_s + TAIL_SECONDS, 3),
            n_samples=int(round((music_s + TAIL_SECONDS) * SR)),
            mma="\n".join(lines) + "\n"))
    return specs


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------
def check_tools():
    missing = []
    if shutil.which("mma") is None:
        missing.append("mma (apt package 'mma')")
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth (apt package 'fluidsynth')")
    if not SOUNDFONT.exists():
        missing.append(f"{SOUNDFONT} (apt package 'fluid-soundfont-gm')")
    try:
        import soundfile  # noqa: F401
    except ImportError:
        missing.append("python package 'soundfile'")
    if shutil.which("oggenc") is None:
        missing.append("oggenc (apt package 'vorbis-tools')")
    if missing:
        sys.exit("error: cannot render audio, missing: " + "; ".join(missing) +
                 "\n  install with: apt-get install -y --no-install-recommends "
                 "mma fluidsynth fluid-soundfont-gm vorbis-tools")


_CRC = []


def _crc_table():
    if not _CRC:
        for i in range(256):
            r = i << 24
            for _ in range(8):
                r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
            _CRC.append(r & 0xFFFFFFFF)
    return _CRC


def fix_ogg_serial(data: bytes, serial: int) -> bytes:
    """libsndfile picks a random Ogg stream serial number; replace it by a fixed
    one (and recompute the page CRCs) so that the file is byte-reproducible."""
    table = _crc_table()
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if out[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg page")
        nseg = out[pos + 26]
        size = 27 + nseg + sum(out[pos + 27:pos + 27 + nseg])
        out[pos + 14:pos + 18] = struct.pack("<I", serial)
        out[pos + 22:pos + 26] = b"\0\0\0\0"
        crc = 0
        for byte in out[pos:pos + size]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
        out[pos + 22:pos + 26] = struct.pack("<I", crc)
        pos += size
    return bytes(out)


def render(job):
    spec, out_dir, quality, kbps = job
    import soundfile as sf
    with tempfile.TemporaryDirectory(prefix="avsamp_") as tmp:
        tmp = Path(tmp)
        (tmp / "s.mma").write_text(spec["mma"])
        r = subprocess.run(["mma", "-f", str(tmp / "s.mid"), str(tmp / "s.mma")],
                           capture_output=True, text=True)
        if r.returncode or not (tmp / "s.mid").exists():
            raise RuntimeError(f"mma failed for {spec['song_id']}:\n{r.stdout}\n{r.stderr}")
        # Fixed settings: 22.05 kHz, float output, default reverb/chorus, one
        # core.  fluidsynth's fast-render output is deterministic.
        r = subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-O", "float",
                            "-o", "synth.cpu-cores=1", "-F", str(tmp / "s.wav"),
                            str(SOUNDFONT), str(tmp / "s.mid")], capture_output=True, text=True)
        if r.returncode or not (tmp / "s.wav").exists():
            raise RuntimeError(f"fluidsynth failed for {spec['song_id']}:\n{r.stderr}")
        y, sr = sf.read(tmp / "s.wav", dtype="float32", always_2d=True)
    assert sr == SR
    y = y.mean(axis=1).astype(np.float64)
    n = spec["n_samples"]
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    fade = int(TAIL_SECONDS * SR)
    y[-fade:] *= np.cos(np.linspace(0, np.pi / 2, fade)) ** 2
    gain = 10 ** (TARGET_RMS_DBFS / 20) / max(np.sqrt(np.mean(y ** 2)), 1e-9)
    gain = min(gain, PEAK_LIMIT / max(np.abs(y).max(), 1e-9))
    y = (y * gain).astype(np.float32)
    pcm_sha = hashlib.sha256(y.astype("<f4").tobytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="avsamp_") as tmp:
        wav, ogg = Path(tmp) / "y.wav", Path(tmp) / "y.ogg"
        sf.write(wav, y, SR, subtype="FLOAT")
        # oggenc (libvorbis) at quality -1, the smallest files of its quality scale, with
        # its lowpass moved from 9.5 to LOWPASS_KHZ (6.5 % smaller on the one song
        # measured), so that 20 s songs fit 30 MB.  soundfile's compression_level stops at
        # quality 0.  --bitrate K (managed, K kbit/s; 16 is libvorbis's floor at 22.05 kHz
        # mono, ~45 KB per 20.7 s song against ~57 KB at -q -1) fits ~615 songs in 30 MB.
        rate = (["--managed", "-b", str(kbps), "-m", str(kbps), "-M", str(kbps)] if kbps
                else ["-q", str(quality)])
        r = subprocess.run(["oggenc", "-Q", *rate, "--advanced-encode-option",
                            f"lowpass_frequency={LOWPASS_KHZ}", "-o", str(ogg), str(wav)],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"oggenc failed for {spec['song_id']}:\n{r.stderr}")
        data = fix_ogg_serial(ogg.read_bytes(), int(spec["song_id"][1:]))
    (Path(out_dir) / spec["file"]).write_bytes(data)
    return spec["song_id"], pcm_sha, float(np.sqrt(np.mean(y ** 2))), float(np.abs(y).max()), len(data)


# --------------------------------------------------------------------------
# Listeners
# --------------------------------------------------------------------------
LISTENER = dict(
    n_users=1500,
    concept_weight=dict(groove=1.0, lead=0.9, tempo_class=0.6, mode=0.5, density=0.4),
    dirichlet_alpha=dict(groove=0.25, lead=0.3, tempo_class=1.0, mode=1.0, density=1.0),
    n_artists=40,                # invisible artists; songs assigned at random
    hidden_dim=8,                # dimension of the invisible taste space
    artist_spread=1.0,           # std of artist vectors
    song_spread=0.5,             # std of per-song deviation from its artist
    invisible_share=0.30,        # target Var(invisible)/Var(audible+invisible)
    noise_std=0.7,               # iid N(0, s^2) added to the standardised affinity
    hype_std=0.8,                # log-popularity (lognormal popularity) of songs
    temperature=0.6,             # softmax temperature of the song choice
    listens_lognorm=(3.7, 0.8),  # log-normal (mu, sigma) of distinct songs / user
    listens_clip=(5, 250),
    plays_mu=0.2, plays_affinity=0.5, plays_sigma=0.6,  # Poisson-lognormal counts
)


def standardise_rows(p):
    return (p - p.mean(axis=1, keepdims=True)) / p.std()


def make_listeners(seed, specs, P=LISTENER):
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    n_s, n_u = len(specs), P["n_users"]
    values = dict(groove=list(GROOVES), lead=[NO_LEAD] + list(LEADS),
                  tempo_class=list(TEMPO_CLASSES), mode=list(MODES), density=list(DENSITIES))
    audible = np.zeros((n_u, n_s))
    for c, vals in values.items():
        pref = rng.dirichlet(np.full(len(vals), P["dirichlet_alpha"][c]), size=n_u)
        pref = standardise_rows(pref)                       # zero-mean per user, unit std
        col = np.array([vals.index(s[c]) for s in specs])
        audible += P["concept_weight"][c] * pref[:, col]
    # invisible artist / hype factors
    d = P["hidden_dim"]
    artist_vec = rng.normal(0, P["artist_spread"], size=(P["n_artists"], d))
    artist = rng.integers(P["n_artists"], size=n_s)
    song_h = artist_vec[artist] + rng.normal(0, P["song_spread"], size=(n_s, d))
    user_t = rng.normal(0, 1, size=(n_u, d))
    inv = user_t @ song_h.T
    share = P["invisible_share"]
    inv *= np.sqrt(share / (1 - share) * audible.var() / inv.var())
    hype = rng.normal(0, P["hype_std"], size=n_s)
    signal = audible + inv
    scale = signal.std()
    noise = rng.normal(0, P["noise_std"], size=signal.shape)
    affinity = signal / scale + noise
    stats = dict(invisible_share=inv.var() / signal.var(),
                 invisible_share_with_noise=(inv / scale).var() / affinity.var(),
                 audible_share_with_noise=(audible / scale).var() / affinity.var())
    # choices: Gumbel top-k without replacement, p ~ softmax(aff/T) * popularity
    logits = affinity / P["temperature"] + hype[None, :]
    n_listen = np.clip(np.round(rng.lognormal(*P["listens_lognorm"], size=n_u)),
                       *P["listens_clip"]).astype(int)
    n_listen = np.minimum(n_listen, n_s)
    g = logits + rng.gumbel(size=logits.shape)
    rows = []
    for u in range(n_u):
        chosen = np.argsort(-g[u])[: n_listen[u]]
        z = (affinity[u, chosen] - affinity[u].mean()) / affinity[u].std()
        lam = np.exp(P["plays_mu"] + P["plays_affinity"] * z +
                     rng.normal(0, P["plays_sigma"], size=len(chosen)))
        plays = 1 + rng.poisson(lam)
        for s, c in sorted(zip(chosen, plays)):
            rows.append((f"U{u + 1:05d}", specs[s]["song_id"], int(c)))
    hidden = dict(artist=artist, hype=hype, h=song_h)
    return rows, hidden, stats, n_listen


# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-songs", type=int, default=480)
    ap.add_argument("--n-users", type=int, default=LISTENER["n_users"])
    ap.add_argument("--jobs", type=int, default=2, help="parallel renderers (max 2 recommended)")
    ap.add_argument("--bitrate", type=int, default=0,
                    help="managed Vorbis bitrate in kbit/s instead of --quality (16 = libvorbis's floor at "
                         "22.05 kHz mono: ~615 songs fit 30 MB); 0 (default) = use --quality")
    ap.add_argument("--quality", type=float, default=-1,
                    help="Vorbis quality for oggenc -q when --bitrate is 0 (-1 = smallest files, 10 = best)")
    ap.add_argument("--accompaniment", choices=["groove", "random"], default="random",
                    help="'random' (the demo): harmony, bass and pad instruments drawn per song, independently of "
                         "the groove (songs.csv gets harmony, bass, pad columns); 'groove': each groove's own")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--no-audio", action="store_true", help="only write the tables")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = args.out
    specs = make_specs(args.seed, args.n_songs, args.accompaniment)

    if not args.no_audio:
        check_tools()
        (out / "audio").mkdir(parents=True, exist_ok=True)
        for old in (out / "audio").glob("*.ogg"):
            if old.stem not in {s["song_id"] for s in specs}:
                old.unlink()
        jobs = [(s, str(out), args.quality, args.bitrate) for s in specs]
        results = {}
        with Pool(max(1, args.jobs)) as pool:
            for k, res in enumerate(pool.imap_unordered(render, jobs), 1):
                results[res[0]] = res
                if k % 20 == 0 or k == len(jobs):
                    el = time.time() - t0
                    print(f"[{k:4d}/{len(jobs)}] rendered ({el:5.0f} s elapsed, "
                          f"~{el / k * (len(jobs) - k):4.0f} s left)", flush=True)
        with open(out / "pcm_sha256.txt", "w") as f:
            f.write("# sha256 of the float32 little-endian mono PCM written to each .ogg "
                    "(before Vorbis encoding)\n")
            for s in specs:
                f.write(f"{results[s['song_id']][1]}  {s['file']}\n")
        rms = np.array([results[s["song_id"]][2] for s in specs])
        peak = np.array([results[s["song_id"]][3] for s in specs])
        print(f"audio: rms {20 * np.log10(rms.min()):.1f}..{20 * np.log10(rms.max()):.1f} dBFS, "
              f"max peak {peak.max():.3f}, {sum(r[4] for r in results.values()) / 1e6:.1f} MB ogg")

    cols = ["song_id", "file", "groove", "lead", "tempo_class", "bpm", "key", "mode", "density",
            *(["harmony", "bass", "pad"] if args.accompaniment == "random" else []), "lead_entry_s", "duration_s"]
    with open(out / "songs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for s in specs:
            w.writerow([s[c] for c in cols])
    with open(out / "segments.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["song_id", "start_s", "end_s", "concept", "value"])
        for s in specs:
            if s["lead"] != NO_LEAD and s["lead_entry_s"] > 0:
                w.writerow([s["song_id"], 0.0, s["lead_entry_s"], "lead", NO_LEAD])
                w.writerow([s["song_id"], s["lead_entry_s"], s["duration_s"], "lead", s["lead"]])
            else:
                w.writerow([s["song_id"], 0.0, s["duration_s"], "lead", s["lead"]])

    P = dict(LISTENER, n_users=args.n_users)
    rows, hidden, stats, n_listen = make_listeners(args.seed, specs, P)
    with open(out / "plays.tsv", "w") as f:
        for u, s, c in rows:
            f.write(f"{u}\t{s}\t{c}\n")
    with open(out / "hidden.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        d = hidden["h"].shape[1]
        w.writerow(["song_id", "artist", "hype"] + [f"h{j}" for j in range(d)])
        for i, s in enumerate(specs):
            w.writerow([s["song_id"], f"A{hidden['artist'][i] + 1:02d}", f"{hidden['hype'][i]:.4f}"]
                       + [f"{x:.4f}" for x in hidden["h"][i]])
    plays = np.array([c for _, _, c in rows])
    songs_heard = {s for _, s, _ in rows}
    print(f"listeners: {P['n_users']} users, {len(rows)} (user, song) pairs, "
          f"{len(songs_heard)}/{len(specs)} songs heard, distinct songs/user mean "
          f"{n_listen.mean():.1f} median {np.median(n_listen):.0f}, plays/pair mean {plays.mean():.2f} "
          f"max {plays.max()}")
    print(f"invisible share of affinity variance: {stats['invisible_share']:.3f} "
          f"(with noise: invisible {stats['invisible_share_with_noise']:.3f}, "
          f"audible {stats['audible_share_with_noise']:.3f})")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
