#!/usr/bin/env python3
"""Build the real-music development world: game music from Debian packages plus synthetic listeners.

Not part of CI: it downloads about 5.3 GB of .deb files (51 packages). Everything it fetches or renders is cached
(by default in ~/.cache/audiovis-realmusic), so a second run only recomputes the tables.
See scripts/realmusic/README.md.

    python scripts/realmusic/build_world.py --out ~/.cache/audiovis-realmusic/world [--seed 0] \\
        [--min-duration 30] [--users 2000]

Steps (each skips what is already cached):

1. fetch     ``apt-get download PKG`` into CACHE/debs/ (no install; needs the package lists: apt-get update).
2. extract   the audio, tracker-module, MIDI and SuperTuxKart ``.music`` descriptor files of each .deb into
             CACHE/x/PKG/ (``dpkg-deb --fsys-tarfile DEB | tar -x`` of those members only).
3. select    the music (rule in MUSIC RULE below and in the README), no sound effects, no cutting.
4. render    tracker modules with ``openmpt123`` and MIDI files with ``fluidsynth`` + FluidR3_GM into
             CACHE/render/PKG/...flac (22,050 Hz mono, peak -1 dBFS).
5. probe     readable by soundfile and at least --min-duration seconds long; byte-identical files dropped.
6. describe  audible descriptors with librosa at 22,050 Hz mono (cached in OUT/descriptors.json).
7. listen    synthetic listeners (seeded) whose tastes depend on the style (package) and the descriptors, plus an
             inaudible share; OUT/plays.tsv.

Outputs in OUT: manifest.csv (song_id,file; paths relative to CACHE, the --audio root), labels.csv (song_id, style,
tempo, brightness, density, texture, and numeric columns the pipeline ignores), plays.tsv, hidden.csv (the inaudible
parts), descriptors.json, world.json (counts, package versions, parameters, variance shares).

System requirements: apt-get, dpkg-deb, tar; openmpt123, fluidsynth and fluid-soundfont-gm for the rendered tracks
(apt-get install -y openmpt123 fluidsynth fluid-soundfont-gm; or --skip-render). Python: numpy, soundfile, soxr,
librosa (all in audiovis's venv).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SR = 22050

# package -> short tag (song ids are tag + index; the style label is the package's name without -data/-common)
PACKAGES = {
    "supertuxkart-data": "stk", "megaglest-data": "mg", "widelands-data": "wl", "neverball-data": "nb",
    "freedink-data": "fd", "xmoto-data": "xm", "lincity-ng-data": "lc", "extremetuxracer-data": "etr",
    "openclonk-data": "oc", "boswars-data": "bw", "trigger-rally-data": "tr", "endless-sky-data": "es",
    "scorched3d-data": "s3d", "frozen-bubble-data": "fb", "pingus-data": "pg", "armagetronad-common": "at",
    "chromium-bsu-data": "cb", "0ad-data-common": "0ad",
    # added for issue 29 (only these may be added; others are reserved for held-out checks)
    "naev-data": "nv", "freedroidrpg-data": "fdr", "freeorion-data": "fo", "0ad-data": "0a",
    "redeclipse-data": "re", "flare-game": "fl", "warmux-data": "wx", "openarena-data": "oa", "lugaru-data": "lg",
    "btanks-data": "bt", "ri-li-data": "rl", "bomberclone-data": "bc", "powermanga-data": "pm",
    "noiz2sa-data": "nz", "mu-cade-data": "mc", "torus-trooper-data": "tt", "tumiki-fighters-data": "tf",
    "titanion-data": "ti", "gunroar-data": "gr", "parsec47-data": "pa", "rrootage-data": "rr",
    "opencity-data": "ocy", "pinball-data": "pb", "tecnoballz-data": "tb", "kobodeluxe-data": "kd",
    "lbreakout2-data": "lb", "holotz-castle-data": "hc", "berusky-data": "br", "freedroid-data": "fdc",
    "solarwolf": "sw", "ceferino-data": "ce", "cataclysm-dda-data": "cdda", "toppler": "tp",
}
# zip archives inside a .deb whose audio members are extracted too, into the archive's folder (as the game's
# virtual file system sees them: 0ad's mods/public/public.zip holds mods/public/audio/...); the zip is then deleted
ARCHIVES = {
    "0ad-data": ["./usr/share/games/0ad/mods/public/public.zip"],
}
AUDIO_EXT = (".ogg", ".oga", ".wav", ".flac", ".opus", ".mp3")
MODULE_EXT = (".it", ".s3m", ".xm", ".mod")
MIDI_EXT = (".mid", ".midi")
EXTRACT_EXT = AUDIO_EXT + MODULE_EXT + MIDI_EXT + (".music",)
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
EXTRACT_VERSION = 1                                      # bump when EXTRACT_EXT changes

# MUSIC RULE. A file is music when
#  (a) a folder on its path has "music" in its name (case-insensitive: music/, Music.ocg/, Musics/), or
#  (b) a package-specific rule in EXTRA_MUSIC names it (music that lives outside such folders),
#  and NOT_MUSIC does not name it (ambience or a second mix of a song that sits in a music folder), except
#  (c) SuperTuxKart: only files named by a .music descriptor's file= (this covers data/music/ and the four track
#      folders with their own music); the fast-filename= variants (the same tune sped up for the last lap) are
#      excluded as near-duplicates.
# and it is then at least --min-duration long (sound effects, ambience loops and jingles are shorter or fail (a)).
EXTRA_MUSIC = {
    "frozen-bubble-data": re.compile(r"/snd/[^/]*zik[^/]*\.ogg$"),        # frozen-mainzik-1p/-2p, introzik
    "freedink-data": re.compile(r"/dink/Sound/[^/]*\.(ogg|mid)$"),     # Dink's music (its effects are .wav)
    # issue 29 packages (what else is in those folders: scripts/realmusic/README.md, "The music rule")
    "btanks-data": re.compile(r"/data/tunes/[^/]*\.ogg$"),             # tunes/ (effects in sounds/)
    "freedroid-data": re.compile(r"/sound/([^/]*\.mod|Paradroid\.ogg)$"),  # the 8 modules + title tune (fx: .wav)
    "freeorion-data": re.compile(r"/data/sound/artificial_intelligence_v3\.ogg$"),  # its one music track
    "lugaru-data": re.compile(r"/Sounds/Music[^/]*\.ogg$"),           # Music1Grass/Snow/Desert, Music2, Music3
    "noiz2sa-data": re.compile(r"/sounds/stg[^/]*\.ogg$"),            # stage music (effects are .wav)
    "parsec47-data": re.compile(r"/sounds/ptn[^/]*\.ogg$"),           # ptn0-3 (effects are .wav)
    "rrootage-data": re.compile(r"/sounds/stg_[^/]*\.ogg$"),          # stg_a/b/c (effects are .wav)
    "tumiki-fighters-data": re.compile(r"/sounds/[^/]*\.ogg$"),       # the six named songs (effects are .wav)
    "powermanga-data": re.compile(r"/sound/handheld_console/music_[^/]*\.ogg$"),   # music_menu/game/congratulations
    "pinball-data": re.compile(r"/pinball/[^/]+/[^/]*\.ogg$"),        # table music (effects are .wav)
    "redeclipse-data": re.compile(r"/data/sounds/(theme|original|theme_chip)\.ogg$"   # title themes
                                  r"|/data/maps/tonatiuh\.ogg$"),     # the one map with its own mapmusic
    "ri-li-data": re.compile(r"/Sounds/[^/]*\.(xm|mod)$"),            # jeu1, jeu2, menu (not language.It)
    "toppler": re.compile(r"/toppler/toppler\.ogg$"),                 # its one music file
    "holotz-castle-data": re.compile(r"/sound/HC(MainTitle|Credits)\.wav$"),  # not the _Fast/_Slow/_UltraSlow copies
}
# files a rule above would take that are not songs: ambience in a music folder, a remaster of another file there
NOT_MUSIC = {
    "flare-game": re.compile(r"/music/wind_ambient\.ogg$"),           # a wind loop, not music
    "warmux-data": re.compile(r"/Olivier_Militon\.-\.Apnee2\.ogg$"),   # another mix of Apnee.ogg (corr. 0.96)
    "freedroidrpg-data": re.compile(r"/music/TechBattle\.ogg$"),      # another mix of AmbientBattle.ogg (corr. 0.8)
    "tecnoballz-data": re.compile(r"/musics/area1-game2\.mod$"),      # area1-game.mod with other samples
}

LISTENER = dict(
    n_users=2000,
    n_songs_range=(10, 60),        # distinct songs per user, uniform
    n_favourite_styles=(1, 2),     # each user loves 1 or 2 styles (p = 1/2 each), drawn ~ sqrt(style size)
    style_weight=1.0,
    descriptor_weight=dict(tempo=0.6, brightness=0.6, density=0.5, texture=0.5),
    dirichlet_alpha=0.5,           # per-user preference over the 3 values of each descriptor
    hidden_dim=4,                  # inaudible taste space (user x song)
    share=dict(audible=0.70, hidden_taste=0.15, hype=0.15),   # variance shares of the choice logit
    logit_std=2.0,                 # scale of the choice logit (sharper = more predictable choices)
    plays_mu=0.2, plays_affinity=0.5, plays_sigma=0.5,        # plays = 1 + Poisson(exp(mu + a z + sigma eps))
)
DESCRIPTORS = dict(tempo=("bpm", ("slow", "medium", "fast")),
                   brightness=("centroid_hz", ("dark", "mid", "bright")),
                   density=("onset_rate", ("sparse", "medium", "dense")),
                   texture=("percussive_ratio", ("tonal", "mixed", "percussive")))


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------- fetch and extract
def fetch(pkg: str, debs: Path) -> Path | None:
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if have:
        return have[-1]
    debs.mkdir(parents=True, exist_ok=True)
    log(f"fetch: apt-get download {pkg}")
    r = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        log(f"fetch: {pkg} failed ({r.stderr.strip().splitlines()[-1:] or r.returncode}); "
            f"run 'apt-get update' if the package lists are missing")
        return None
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    return have[-1] if have else None


def deb_tar(deb: Path, tar_args: list[str]) -> str:
    """``dpkg-deb --fsys-tarfile DEB | tar TAR_ARGS``; tar's stdout; raises when either side fails."""
    dp = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", *tar_args], stdin=dp.stdout, capture_output=True, text=True)
    dp.stdout.close()
    if dp.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"unpacking {deb.name} failed (dpkg-deb {dp.returncode}, tar {tar.returncode}): "
                           f"{tar.stderr.strip()[-300:]}")
    return tar.stdout


def extract(pkg: str, deb: Path, xdir: Path) -> None:
    dest = xdir / pkg
    marker = dest / ".extracted.json"
    want = {"deb": deb.name, "ext": list(EXTRACT_EXT), "version": EXTRACT_VERSION}
    if pkg in ARCHIVES:
        want["archives"] = ARCHIVES[pkg]
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    log(f"extract: {deb.name}")
    listing = deb_tar(deb, ["-t"]).splitlines()
    archives = [m for m in listing if m in ARCHIVES.get(pkg, [])]
    members = [m for m in listing if m.lower().endswith(EXTRACT_EXT)] + archives
    dest.mkdir(parents=True, exist_ok=True)
    if members:
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".lst") as f:
            f.write("\n".join(members) + "\n")
        try:
            deb_tar(deb, ["-x", "-C", str(dest), "--verbatim-files-from", "-T", f.name])
        finally:
            os.unlink(f.name)
    for a in archives:                                   # audio members of a zip, into the zip's folder
        z = dest / a
        log(f"extract: {a} (zip)")
        with zipfile.ZipFile(z) as zf:
            for m in zf.namelist():
                if m.lower().endswith(EXTRACT_EXT) and ".." not in m.split("/"):
                    zf.extract(m, z.parent)
        z.unlink()
    marker.write_text(json.dumps(want))


# ---------------------------------------------------------------------------- select
def stk_music(root: Path) -> tuple[set[Path], set[Path]]:
    """Files named by SuperTuxKart's .music descriptors: (file=, fast-filename=)."""
    named, fast = set(), set()
    for m in root.rglob("*.music"):
        t = m.read_text(errors="replace")
        named |= {(m.parent / f).resolve() for f in re.findall(r'\bfile\s*=\s*"([^"]+)"', t)}
        fast |= {(m.parent / f).resolve() for f in re.findall(r'fast-filename\s*=\s*"([^"]+)"', t)}
    return named, fast


def music_files(pkg: str, root: Path) -> tuple[list[Path], int, list[str]]:
    """(music files, audio-like files in the package, notes on what was left out and why)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXT + MODULE_EXT
                   + MIDI_EXT)
    notes = []
    if pkg == "supertuxkart-data":
        named, fast = stk_music(root)
        out = [p for p in files if p.resolve() in named and p.resolve() not in fast]
        notes.append(f"{len(fast)} fast-filename variants excluded")
        return out, len(files), notes
    out = []
    for p in files:
        rel = "/" + p.relative_to(root).as_posix()
        folders = rel.split("/")[1:-1]
        if any("music" in d.lower() for d in folders) or (pkg in EXTRA_MUSIC and EXTRA_MUSIC[pkg].search(rel)):
            if pkg in NOT_MUSIC and NOT_MUSIC[pkg].search(rel):
                notes.append(f"not music (NOT_MUSIC): {rel[1:]}")
                continue
            out.append(p)
    return out, len(files), notes


# ---------------------------------------------------------------------------- render
def render(src: Path, dst: Path) -> str | None:
    """Render a tracker module or MIDI file to 22,050 Hz mono FLAC at peak -1 dBFS; None or the error."""
    import soundfile as sf
    if dst.exists():
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "out.wav"
        if src.suffix.lower() in MODULE_EXT:
            mod = Path(td) / src.name                    # openmpt123 --render writes next to its input
            shutil.copy(src, mod)
            cmd = ["openmpt123", "--quiet", "--render", "--samplerate", str(SR), "--channels", "1",
                   "--output-type", "wav", "--force", str(mod)]
            produced = Path(str(mod) + ".wav")
        else:
            cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SR), SOUNDFONT, str(src)]
            produced = wav
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not produced.exists():
            return f"{cmd[0]} failed: {(r.stderr or r.stdout).strip()[-200:]}"
        y, sr = sf.read(produced, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        nz = np.flatnonzero(np.abs(y) > 1e-4)
        if len(nz) == 0:
            return "rendered silence"
        y = y[: nz[-1] + 1]                              # drop the trailing silence of the synthesiser's tail
        y *= 10 ** (-1 / 20) / np.abs(y).max()
        tmp = dst.with_suffix(".tmp.flac")
        sf.write(tmp, y, sr, subtype="PCM_16")
        tmp.rename(dst)
    return None


# ---------------------------------------------------------------------------- descriptors
def describe(path: str) -> dict:
    """Audible descriptors of one file at 22,050 Hz mono (whole track)."""
    import librosa
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    y, sr = librosa.load(path, sr=SR, mono=True)
    dur = len(y) / sr
    hop = 512
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=hop))
    rms = librosa.feature.rms(S=S, frame_length=2048)[0]
    loud = rms > 0.1 * np.median(rms[rms > 0]) if np.any(rms > 0) else np.ones_like(rms, bool)
    cen = librosa.feature.spectral_centroid(S=S, sr=sr)[0]
    oenv = librosa.onset.onset_strength(S=librosa.amplitude_to_db(librosa.feature.melspectrogram(S=S ** 2, sr=sr)),
                                        sr=sr, hop_length=hop)
    tempo, _ = librosa.beat.beat_track(onset_envelope=oenv, sr=sr, hop_length=hop)
    onsets = librosa.onset.onset_detect(onset_envelope=oenv, sr=sr, hop_length=hop)
    # HPSS on a coarser grid (1024-point frames without overlap, 17-cell median filters) to keep it fast
    H, P = librosa.decompose.hpss(np.abs(librosa.stft(y, n_fft=1024, hop_length=1024)), kernel_size=17)
    eh, ep = float(np.sum(H ** 2)), float(np.sum(P ** 2))
    return dict(duration_s=round(dur, 3), bpm=round(float(np.atleast_1d(tempo)[0]), 2),
                centroid_hz=round(float(np.median(cen[loud])), 1), onset_rate=round(len(onsets) / dur, 4),
                percussive_ratio=round(ep / (eh + ep), 4))


# ---------------------------------------------------------------------------- listeners
def terciles(values: np.ndarray, names: tuple[str, str, str]) -> list[str]:
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return [names[0] if v <= lo else names[2] if v > hi else names[1] for v in values]


def make_listeners(seed: int, songs: list[dict], n_users: int, P=LISTENER):
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    n_s = len(songs)
    styles = sorted({s["style"] for s in songs})
    style_idx = np.array([styles.index(s["style"]) for s in songs])
    size = np.bincount(style_idx, minlength=len(styles))
    p_style = np.sqrt(size) / np.sqrt(size).sum()
    sty = np.zeros((n_users, n_s))
    favourites = []
    for u in range(n_users):
        k = rng.choice(P["n_favourite_styles"])
        fav = rng.choice(len(styles), size=k, replace=False, p=p_style)
        favourites.append([styles[i] for i in fav])
        sty[u] = np.isin(style_idx, fav)
    sty -= sty.mean(axis=1, keepdims=True)
    audible = P["style_weight"] * sty / sty.std()
    for c, (_, vals) in DESCRIPTORS.items():
        pref = rng.dirichlet(np.full(len(vals), P["dirichlet_alpha"]), size=n_users)
        pref -= pref.mean(axis=1, keepdims=True)
        col = np.array([vals.index(s[c]) for s in songs])
        d = pref[:, col]
        audible += P["descriptor_weight"][c] * d / d.std()
    audible = (audible - audible.mean()) / audible.std()
    h = P["hidden_dim"]
    user_t = rng.normal(size=(n_users, h))
    song_h = rng.normal(size=(n_s, h))
    hidden = user_t @ song_h.T
    hidden = (hidden - hidden.mean()) / hidden.std()
    hype = rng.normal(size=n_s)
    hype = (hype - hype.mean()) / hype.std()
    sh = P["share"]
    logit = P["logit_std"] * (np.sqrt(sh["audible"]) * audible + np.sqrt(sh["hidden_taste"]) * hidden
                              + np.sqrt(sh["hype"]) * hype[None, :])
    tot = logit.var()
    shares = {"audible": float((P["logit_std"] ** 2 * sh["audible"] * audible.var()) / tot),
              "hidden_taste": float((P["logit_std"] ** 2 * sh["hidden_taste"] * hidden.var()) / tot),
              "hype": float((P["logit_std"] ** 2 * sh["hype"] * np.broadcast_to(hype, logit.shape).var()) / tot)}
    lo, hi = P["n_songs_range"]
    n_listen = np.minimum(rng.integers(lo, hi + 1, size=n_users), n_s)
    g = logit + rng.gumbel(size=logit.shape)             # Gumbel top-k = sampling without replacement ~ softmax
    rows = []
    for u in range(n_users):
        chosen = np.argsort(-g[u])[: n_listen[u]]
        z = (logit[u, chosen] - logit[u].mean()) / logit[u].std()
        lam = np.exp(P["plays_mu"] + P["plays_affinity"] * z + rng.normal(0, P["plays_sigma"], size=len(chosen)))
        plays = 1 + rng.poisson(lam)
        for s, c in sorted(zip(chosen, plays)):
            rows.append((f"U{u + 1:05d}", songs[s]["song_id"], int(c)))
    return rows, dict(hype=hype, h=song_h), shares, favourites


# ---------------------------------------------------------------------------- main
def sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def style_name(pkg: str) -> str:
    return re.sub(r"-(data|common)$", "", pkg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="world folder (tables); the audio stays in --cache")
    ap.add_argument("--cache", default="~/.cache/audiovis-realmusic",
                    help="download/extract/render cache; the --audio root of the manifest (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the listeners (default: 0)")
    ap.add_argument("--min-duration", type=float, default=30.0, help="shortest music file kept (s; default: 30)")
    ap.add_argument("--users", type=int, default=LISTENER["n_users"], help="synthetic listeners (default: 2000)")
    ap.add_argument("--packages", nargs="+", default=list(PACKAGES), help="Debian packages (default: all 51)")
    ap.add_argument("--skip-render", action="store_true",
                    help="leave out tracker modules and MIDI files (no openmpt123/fluidsynth needed)")
    ap.add_argument("--jobs", type=int, default=2, help="processes computing descriptors (default: 2)")
    a = ap.parse_args(argv)
    t0 = time.time()
    cache = Path(a.cache).expanduser().resolve()
    out = Path(a.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    debs, xdir, rdir = cache / "debs", cache / "x", cache / "render"
    if not a.skip_render:
        missing = [t for t in ("openmpt123", "fluidsynth") if shutil.which(t) is None]
        if missing or not Path(SOUNDFONT).exists():
            sys.exit(f"missing {missing or SOUNDFONT}: apt-get install -y openmpt123 fluidsynth fluid-soundfont-gm "
                     f"(or pass --skip-render)")

    report: dict[str, dict] = {}
    candidates: list[tuple[str, Path, Path]] = []        # (package, original file, file the pipeline reads)
    for pkg in a.packages:
        r = report[pkg] = dict(deb=None, audio_like_files=0, music_files=0, rendered=0, unreadable=[],
                               too_short=0, duplicates=0, kept=0, hours=0.0, notes=[])
        deb = fetch(pkg, debs)
        if deb is None:
            r["notes"].append("download failed")
            continue
        r["deb"] = deb.name
        extract(pkg, deb, xdir)
        music, n_audio, notes = music_files(pkg, xdir / pkg)
        r["audio_like_files"], r["music_files"] = n_audio, len(music)
        r["notes"] += notes
        for p in music:
            rel = p.relative_to(xdir / pkg)
            if p.suffix.lower() in MODULE_EXT + MIDI_EXT:
                if a.skip_render:
                    r["notes"].append(f"not rendered (--skip-render): {rel}")
                    continue
                dst = rdir / pkg / (rel.as_posix() + ".flac")
                err = render(p, dst)
                if err:
                    r["unreadable"].append(f"{rel}: {err}")
                    continue
                r["rendered"] += 1
                candidates.append((pkg, p, dst))
            else:
                candidates.append((pkg, p, p))

    # probe: readable, long enough, not a byte-identical duplicate
    import soundfile as sf
    kept: list[dict] = []
    seen: dict[str, str] = {}
    for pkg, orig, f in candidates:
        r = report[pkg]
        try:
            info = sf.info(str(f))
            dur = info.frames / info.samplerate
        except Exception as e:                            # libsndfile raises several types
            r["unreadable"].append(f"{orig.relative_to(xdir / pkg)}: {type(e).__name__}: {str(e)[:120]}")
            continue
        if dur < a.min_duration:
            r["too_short"] += 1
            continue
        h = sha1(f)
        if h in seen:
            r["duplicates"] += 1
            r["notes"].append(f"duplicate of {seen[h]}: {orig.relative_to(xdir / pkg)}")
            continue
        seen[h] = f"{pkg}/{orig.relative_to(xdir / pkg)}"
        kept.append(dict(package=pkg, style=style_name(pkg), orig=str(orig.relative_to(xdir / pkg)),
                         file=f.relative_to(cache).as_posix(), path=str(f), duration=dur))
    counters: dict[str, int] = {}
    for s in kept:
        counters[s["package"]] = counters.get(s["package"], 0) + 1
        s["song_id"] = f"{PACKAGES.get(s['package'], s['package'])}{counters[s['package']]:02d}"
        report[s["package"]]["kept"] += 1
        report[s["package"]]["hours"] += s["duration"] / 3600
    if len(kept) < 10:
        sys.exit(f"only {len(kept)} music files found: nothing to build")

    # descriptors (cached by file, size and mtime)
    dpath = out / "descriptors.json"
    cached = json.loads(dpath.read_text()) if dpath.exists() else {}
    keyof = {s["song_id"]: f"{s['file']}:{os.path.getsize(s['path'])}:{int(os.path.getmtime(s['path']))}"
             for s in kept}
    todo = [s for s in kept if keyof[s["song_id"]] not in cached]
    if todo:
        log(f"describe: {len(todo)} files with librosa ({a.jobs} processes)")
        with ProcessPoolExecutor(a.jobs) as ex:
            for i, (s, d) in enumerate(zip(todo, ex.map(describe, [s["path"] for s in todo]))):
                cached[keyof[s["song_id"]]] = d
                if (i + 1) % 20 == 0 or i + 1 == len(todo):
                    log(f"describe: {i + 1}/{len(todo)}")
                    dpath.write_text(json.dumps(cached, indent=0, sort_keys=True))
    for s in kept:
        s.update(cached[keyof[s["song_id"]]])
    for c, (num, names) in DESCRIPTORS.items():
        for s, v in zip(kept, terciles(np.array([s[num] for s in kept]), names)):
            s[c] = v

    # tables
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["song_id", "file"])
        w.writerows([s["song_id"], s["file"]] for s in kept)
    num_cols = ["duration_s", "bpm", "centroid_hz", "onset_rate", "percussive_ratio"]
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["song_id", "style", *DESCRIPTORS, *num_cols])
        w.writerows([s["song_id"], s["style"], *(s[c] for c in DESCRIPTORS), *(s[c] for c in num_cols)]
                    for s in kept)
    rows, hidden, shares, favourites = make_listeners(a.seed, kept, a.users)
    with open(out / "plays.tsv", "w") as f:
        f.writelines(f"{u}\t{s}\t{c}\n" for u, s, c in rows)
    with open(out / "hidden.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["song_id", "hype"] + [f"h{j}" for j in range(hidden["h"].shape[1])])
        w.writerows([s["song_id"], f"{hidden['hype'][i]:.4f}", *(f"{v:.4f}" for v in hidden["h"][i])]
                    for i, s in enumerate(kept))
    total_h = sum(s["duration"] for s in kept) / 3600
    n_users_active = len({u for u, _, _ in rows})
    world = dict(seed=a.seed, min_duration=a.min_duration, songs=len(kept), hours=round(total_h, 3),
                 packages_with_songs=sum(1 for r in report.values() if r["kept"]), users=n_users_active,
                 play_rows=len(rows), plays=int(sum(c for _, _, c in rows)), variance_shares=shares,
                 listener=LISTENER, report=report,
                 songs_by_style={st: sum(1 for s in kept if s["style"] == st) for st in sorted({s["style"]
                                                                                              for s in kept})},
                 files={s["song_id"]: s["orig"] for s in kept})
    (out / "world.json").write_text(json.dumps(world, indent=1, default=float))

    log("")
    log(f"{'package':22s} {'deb':>5s} {'audio':>6s} {'music':>6s} {'render':>6s} {'short':>6s} {'bad':>4s} "
        f"{'dup':>4s} {'kept':>5s} {'hours':>6s}")
    for pkg, r in report.items():
        log(f"{pkg:22s} {'yes' if r['deb'] else 'no':>5s} {r['audio_like_files']:6d} {r['music_files']:6d} "
            f"{r['rendered']:6d} {r['too_short']:6d} {len(r['unreadable']):4d} {r['duplicates']:4d} "
            f"{r['kept']:5d} {r['hours']:6.2f}")
        for u in r["unreadable"]:
            log(f"    unreadable: {u}")
    log(f"{'total':22s} {'':5s} {'':6s} {'':6s} {'':6s} {'':6s} {'':4s} {'':4s} {len(kept):5d} {total_h:6.2f}")
    log(f"{len(kept)} songs from {world['packages_with_songs']} packages, {total_h:.2f} h; {n_users_active} "
        f"listeners, {len(rows)} (user, song) rows, {world['plays']} plays; logit variance shares "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    if len(kept) < 300:
        log(f"note: {len(kept)} < 300 tracks: these packages do not hold 300 music files of >= {a.min_duration:g} s "
            f"(see scripts/realmusic/README.md)")
    log(f"built in {time.time() - t0:.0f} s. Run the pipeline with:")
    log(f"  OPENBLAS_NUM_THREADS=1 .venv/bin/audiovis run -w {cache}/ws{a.seed} --audio {cache} "
        f"--plays {out}/plays.tsv --manifest {out}/manifest.csv --labels {out}/labels.csv --seed {a.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
