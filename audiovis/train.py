"""Training loop: random 3 s crops -> factor vectors, MSE, split by song, early stopping, resumable."""
from __future__ import annotations

import copy
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import TrainConfig
from .errors import ParameterError, WorkspaceError
from .factors import load_factors
from .features import FeatureStore
from .metrics import cold_start_metrics
from .model import (
    AUTO_WIDE_HOURS,
    PRESETS,
    AudioCNN,
    ModelConfig,
    auto_preset,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from .readout import refit_output
from .workspace import Workspace

OUTPUTS = ("model.pt",)                 # what the stage writes, in the workspace (its done-marker records it)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_config(preset: str, n_factors: int, n_mels: int, n_frames: int) -> ModelConfig:
    if preset not in PRESETS:
        raise ParameterError(f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    return ModelConfig(n_mels=n_mels, n_frames=n_frames, n_factors=n_factors, **PRESETS[preset])


class _Crops:
    """Random crops of whole songs (the paper trains on random 3 s windows)."""

    def __init__(self, store: FeatureStore, songs: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
        self.store, self.rng = store, rng
        W = store.cfg.window_frames
        lengths = np.array([store.n_frames(s) for s in songs])
        ok = lengths >= W
        self.songs, self.lengths, self.targets = songs[ok], lengths[ok], targets[ok]

    def sample(self, b: int, per_song: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``b`` crops [shape=(b, n_mels, W)] and their songs' targets; with ``per_song`` > 1, ``b // per_song``
        songs with ``per_song`` consecutive rows each."""
        pick = np.repeat(self.rng.integers(0, len(self.songs), size=b // per_song), per_song)
        return self.cut(pick), self.targets[pick]

    def cut(self, pick: np.ndarray) -> np.ndarray:
        """One random crop of each picked song (positions into ``songs``) [shape=(len(pick), n_mels, W)]."""
        W = self.store.cfg.window_frames
        starts = (self.rng.random(len(pick)) * (self.lengths[pick] - W + 1)).astype(np.int64)
        return np.stack([np.asarray(self.store.logmel[self.store.offsets[s] + st:self.store.offsets[s] + st + W],
                                    dtype=np.float32).T for s, st in zip(self.songs[pick], starts)])


@torch.no_grad()
def predict_windows(model: AudioCNN, store: FeatureStore, windows: np.ndarray, batch_size: int = 256,
                    device=None) -> np.ndarray:
    """Model output for windows [shape=(len(windows), n_factors)]."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(windows), batch_size):
        x = torch.from_numpy(store.batch(windows[i:i + batch_size])).to(device)
        out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.n_factors), np.float32)


def predict_songs(model: AudioCNN, store: FeatureStore, songs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A song's predicted factors: the mean over its consecutive windows (NaN without windows)."""
    song_of = store.windows[:, 0]
    sel = np.flatnonzero(np.isin(song_of, songs))
    pred = predict_windows(model, store, sel, batch_size)
    out = np.full((len(songs), model.cfg.n_factors), np.nan, np.float32)
    pos = {s: i for i, s in enumerate(songs)}
    sums = np.zeros_like(out)
    counts = np.zeros(len(songs))
    for w, p in zip(sel, pred):
        i = pos[int(song_of[w])]
        sums[i] += p
        counts[i] += 1
    has = counts > 0
    out[has] = sums[has] / counts[has, None]
    return out


def augment(x: np.ndarray, y: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, group: int = 1):
    """Gain, SpecAugment masks and mixup (of whole groups of ``group`` consecutive crops) on a batch of log-mel
    crops [shape=(b, n_mels, t)] in dB with targets [shape=(b, f)]."""
    if cfg.gain_db:
        x = x + rng.uniform(-cfg.gain_db, cfg.gain_db, size=(len(x), 1, 1)).astype(np.float32)
    if cfg.spec_masks:
        x = x.copy()
        b, n_mels, t = x.shape
        fill = x.mean(axis=(1, 2))
        for i in range(b):
            for _ in range(cfg.spec_masks):
                f0, fw = rng.integers(0, n_mels), rng.integers(0, 13)
                t0, tw = rng.integers(0, t), rng.integers(0, 13)
                x[i, f0:f0 + fw, :] = fill[i]
                x[i, :, t0:t0 + tw] = fill[i]
    if cfg.mixup:
        k = group
        lam = np.repeat(rng.beta(cfg.mixup, cfg.mixup, size=len(x) // k), k).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)                       # the first crop dominates
        j = (rng.permutation(len(x) // k)[:, None] * k + np.arange(k)).ravel()
        p = lam[:, None, None] * 10 ** (x / 10) + (1 - lam[:, None, None]) * 10 ** (x[j] / 10)
        x = (10 * np.log10(np.maximum(p, 1e-10))).astype(np.float32)
        y = lam[:, None] * y + (1 - lam[:, None]) * y[j]
    return x, y


def pretrain(model: AudioCNN, store: FeatureStore, songs: np.ndarray, cfg: TrainConfig, device,
             progress: bool = True) -> list[float]:
    """Self-supervised contrastive pretraining of the conv layers (CLMR / COLA style), in place; no plays needed.

    Each batch holds two augmented random crops of ``cfg.batch_size // 2`` songs; a projection head (two linear
    layers on the pooled conv features) maps each crop to a unit vector, and the NT-Xent loss (temperature
    ``cfg.pretrain_temperature``) pulls the two crops of a song together and pushes the other songs' crops away.
    ``songs`` may include the held-out songs: their audio is known at cold-start time (their plays are not).

    Returns
    -------
    losses : list of float   mean loss per epoch
    """
    rng = np.random.default_rng(cfg.seed + 1)
    d = model.features(torch.zeros(1, store.cfg.n_mels, store.cfg.window_frames, device=device)).shape[1]
    head = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)).to(device)
    params = [p for n, p in model.named_parameters() if n.startswith("conv")] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    crops = _Crops(store, songs, np.zeros((len(songs), 1), np.float32), rng)
    n = max(2, cfg.batch_size // 2)
    losses = []
    model.train()
    for epoch in range(cfg.pretrain_epochs):
        tl = 0.0
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"pretrain epoch {epoch + 1}/{cfg.pretrain_epochs}",
                   unit="batch", disable=not progress, leave=False)
        for _ in bar:
            pick = rng.choice(len(crops.songs), size=min(n, len(crops.songs)), replace=False)
            xs = []
            for _view in range(2):
                x = crops.cut(pick)
                xs.append(augment(x, np.zeros((len(x), 1), np.float32), cfg, rng)[0])
            x = torch.from_numpy(np.concatenate(xs)).to(device)
            z = F.normalize(head(model.features(x)), dim=1)
            sim = z @ z.T / cfg.pretrain_temperature
            sim.fill_diagonal_(-math.inf)
            m = len(pick)
            target = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)]).to(device)
            loss = F.cross_entropy(sim, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(tl / cfg.steps_per_epoch)
        if progress:
            print(f"pretrain: epoch {epoch + 1:3d}  contrastive loss {losses[-1]:.4f}")
    return losses


_STATE_KEYS = ("config", "model", "opt", "epoch", "best", "best_epoch", "history", "best_state", "torch_rng",
               "np_rng")


def _short(e: BaseException) -> str:
    """One line of an exception, without torch's advice to load with ``weights_only=False`` (never taken)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "weights_only" not in ln]
    return f"{type(e).__name__}: {lines[0].split('. ')[0][:200]}" if lines else type(e).__name__


def _read_state(path, device) -> tuple[dict | None, str | None]:
    """The training state saved after an epoch, or (None, why it cannot be used).

    Loaded with ``weights_only=True`` only: a state holding a pickled object is refused, not unpickled.
    """
    import pickle
    try:
        if path.stat().st_size == 0:
            return None, "the file is empty, 0 bytes"
        st = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        why = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        if not why and "Weights only load failed" not in str(e):
            return None, f"not a torch file: {_short(e)}"
        return None, ("it holds pickled objects other than tensors and plain data, which are never loaded"
                      + (f": {why[0][:200]}" if why else ""))
    except EOFError:
        return None, "the file is cut short, EOFError"
    except Exception as e:  # noqa: BLE001  whatever torch raises for a file that is not a whole state
        return None, f"not a whole torch file: {_short(e)}"
    if not isinstance(st, dict):
        return None, f"not a training state: it holds a {type(st).__name__}, not a dict"
    missing = [k for k in _STATE_KEYS if k not in st]
    if missing:
        return None, f"not a training state: no {', '.join(missing)}"
    return st, None


def train(workspace: str | os.PathLike | Workspace, cfg: TrainConfig | None = None, force: bool = False,
          progress: bool = True) -> dict:
    """Train the content model on the workspace's features and WMF factors; writes ``model.pt``.

    Resumable: the full training state is saved after every epoch (``train_state.pt``) and picked up by the next
    run with the same config. A state file that cannot be read (empty, cut short, not a training state, or
    holding pickled objects, which are never unpickled) is not fatal: the run says so on stderr and in the
    workspace report (stage ``train``) and starts from scratch.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("featurize", "factorize")
    cfg = cfg or TrainConfig()
    done = None if force else ws.finished("train", OUTPUTS, say=progress, config=cfg.to_dict())
    if done:
        return done["summary"]
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    store = FeatureStore(ws)
    fac = load_factors(ws)
    Y = fac["song_factors"]
    split = fac["split"]
    has_win = store.has_windows()
    tr = np.flatnonzero((split == "train") & has_win)
    va = np.flatnonzero((split == "valid") & has_win)
    if len(tr) < 2 or len(va) < 1:
        raise WorkspaceError(f"need at least 2 training and 1 validation song with features; have {len(tr)} "
                             f"and {len(va)}")
    train_audio_s = float(store.cfg.frames_to_seconds(sum(store.n_frames(s) for s in tr)))
    preset = auto_preset(train_audio_s) if cfg.preset == "auto" else cfg.preset
    if progress and cfg.preset == "auto":
        print(f"train: preset auto -> {preset} ({train_audio_s / 3600:.1f} h of training audio; wide from "
              f"{AUTO_WIDE_HOURS:g} h)")
    mcfg = model_config(preset, Y.shape[1], store.cfg.n_mels, store.cfg.window_frames)
    if mcfg.arch == "musicnn":
        from .models.frozen import check_musicnn_features
        check_musicnn_features(store.cfg, preset)
    # per-mel-bin standardisation from training songs
    frames = np.concatenate([np.asarray(store.song(s)[::4], dtype=np.float32) for s in tr])
    stats = [torch.from_numpy(a) for a in (frames.mean(0)[:, None], frames.std(0)[:, None] + 1e-3,
                                           Y[tr].mean(0), Y[tr].std(0) + 1e-6)]
    del frames

    if mcfg.arch == "musicnn" and mcfg.frozen:           # a frozen pretrained front end: fit the head only
        return _train_head(ws, cfg, mcfg, store, fac, tr, va, stats, preset, train_audio_s, progress)

    def fresh():
        """A new model, optimiser, scheduler and generator, seeded: what epoch 1 starts from."""
        torch.manual_seed(cfg.seed)
        model = build_model(mcfg)
        for buf, v in zip((model.in_mean, model.in_std, model.out_mean, model.out_std), stats):
            buf.copy_(v)
        if mcfg.arch == "musicnn":                          # fine-tuning: the head's input statistics
            from .models.frozen import pooled_features
            from .models.headfit import store_window_stats
            P = np.hstack([np.asarray(pooled_features(ws, store, model.dataset, progress=progress)),
                           store_window_stats(store)])[np.isin(store.windows[:, 0], tr)]
            model.feat_mean.copy_(torch.from_numpy(P.mean(0)))
            model.feat_std.copy_(torch.from_numpy(P.std(0) + 1e-4))
        model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_decay, patience=cfg.lr_patience) \
            if cfg.lr_decay < 1 else None
        return model, opt, sched, np.random.default_rng(cfg.seed)

    model, opt, sched, rng = fresh()
    va_windows = np.flatnonzero(np.isin(store.windows[:, 0], va))
    va_targets = torch.from_numpy(Y[store.windows[va_windows, 0]])
    va_song_pos = np.searchsorted(va, store.windows[va_windows, 0])
    va_counts = np.bincount(va_song_pos, minlength=len(va)).astype(np.float64)
    if cfg.early_stop == "valid_auc":                   # validation songs' plays (WMF saw them; the CNN did not)
        va_played = (ws.play_matrix().tocsc()[:, va] > 0).toarray()
    state_path = ws.path / "train_state.pt"
    start_epoch, best, best_epoch, history, best_state = 0, math.inf, -1, [], None
    st_ema = None
    with ws.db:
        ws.db.execute("DELETE FROM report WHERE stage='train'")
    if state_path.exists() and not force:
        st, why = _read_state(state_path, device)
        if st is not None and st.get("config") == cfg.to_dict():
            try:
                model.load_state_dict(st["model"])
                opt.load_state_dict(st["opt"])
                if sched is not None and st.get("sched"):
                    sched.load_state_dict(st["sched"])
                start_epoch, best, best_epoch = int(st["epoch"]) + 1, float(st["best"]), int(st["best_epoch"])
                history, best_state = list(st["history"]), st["best_state"]
                st_ema = st.get("ema")
                if best_epoch >= 0 and not isinstance(best_state, dict):
                    raise ValueError("no best model state")
                torch.set_rng_state(st["torch_rng"])
                rng.bit_generator.state = st["np_rng"]
            except Exception as e:  # noqa: BLE001  a state that reads but does not fit this run: start afresh
                why = f"its contents do not fit: {_short(e)}"
                model, opt, sched, rng = fresh()
                start_epoch, best, best_epoch, history, best_state = 0, math.inf, -1, [], None
                st_ema = None
            else:
                if progress:
                    print(f"train: resuming after epoch {start_epoch}")
        if why:
            msg = f"{state_path} is unreadable ({why}): starting training from scratch"
            print(f"train: {msg}", file=sys.stderr, flush=True)
            with ws.db:
                ws.db.execute("INSERT INTO report(stage, item, reason) VALUES ('train', ?, ?)",
                              (state_path.name, msg))
            state_path.unlink(missing_ok=True)
    pretrain_losses = None
    if cfg.pretrain_epochs and start_epoch == 0:
        every = np.flatnonzero(has_win)                   # all songs' audio: no plays are used here
        pretrain_losses = pretrain(model, store, every, cfg, device, progress)
    if cfg.pretrain_epochs and cfg.freeze_conv:           # the pretrained front end stays as it is
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith("conv"))
        for name in model.conv_names:
            getattr(model, name).eval()
    crops = _Crops(store, tr, Y[tr], rng)
    shadow = None                                         # the weights' moving average, validated and kept
    if cfg.ema:
        shadow = copy.deepcopy(model)
        if start_epoch and st_ema is not None:
            shadow.load_state_dict(st_ema)
        pairs = list(zip(shadow.state_dict().values(), model.state_dict().values()))
    ema_steps = start_epoch * cfg.steps_per_epoch         # one average step per training step since epoch 1
    k = max(cfg.crops_per_song, 1)
    t0 = time.time()
    n_seen = 0
    for epoch in range(start_epoch, cfg.epochs):
        if epoch - best_epoch > cfg.patience and best_epoch >= 0:
            break
        model.train()
        if cfg.pretrain_epochs and cfg.freeze_conv:       # frozen conv blocks keep their batch-norm statistics
            for name in model.conv_names:
                getattr(model, name).eval()
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"train epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False)
        tl = 0.0
        for _ in bar:
            x, y = crops.sample(cfg.batch_size, k)
            x, y = augment(x, y, cfg, rng, k)
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y[::k]).to(device)
            out = model(x).reshape(len(y), k, -1).mean(1)    # a song-level prediction from k crops
            loss = F.mse_loss((out - y) / model.out_std, torch.zeros_like(y))  # MSE in standardised units
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if shadow is not None:
                ema_steps += 1                            # the decay warms up: early steps are not held back
                w = 1 - min(cfg.ema, (1 + ema_steps) / (10 + ema_steps))   # by the untrained initial weights
                with torch.no_grad():                     # weights and batch-norm statistics alike
                    for e, v in pairs:
                        if e.dtype.is_floating_point:     # lerp leaves a tensor that does not change as it is
                            e.lerp_(v, w)
                        else:
                            e.copy_(v)
            tl += loss.item()
            n_seen += len(x)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        kept = shadow if shadow is not None else model  # the model validated, and kept when best
        pred = torch.from_numpy(predict_windows(kept, store, va_windows))
        vl = F.mse_loss((pred - va_targets) / model.out_std.cpu(), torch.zeros_like(pred)).item()
        song_pred = np.zeros((len(va), pred.shape[1]))
        np.add.at(song_pred, va_song_pos, pred.numpy())
        song_pred /= va_counts[:, None]                 # the validation songs' predictions, as evaluate makes them
        song_mse = float((((song_pred - Y[va]) / model.out_std.cpu().numpy()) ** 2).mean())
        history.append({"epoch": epoch + 1, "train_mse": tl / cfg.steps_per_epoch, "valid_mse": vl,
                        "valid_song_mse": song_mse, "lr": opt.param_groups[0]["lr"]})
        if cfg.early_stop == "valid_song_mse":
            vl = song_mse
        if cfg.early_stop == "valid_auc":               # the epoch is picked by what evaluate measures
            auc = cold_start_metrics(fac["user_factors"], song_pred, va_played)["auc"]
            history[-1]["valid_auc"] = auc
            vl = -auc                                   # lower is better, as for the MSE
        if sched is not None:
            sched.step(vl)
        if vl < best:
            best, best_epoch = vl, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}
        if progress:
            print(f"train: epoch {epoch + 1:3d}  lr {history[-1]['lr']:.1e}  train mse {tl / cfg.steps_per_epoch:.4f}  "
                  f"valid mse {history[-1]['valid_mse']:.4f}"
                  + (f"  valid auc {history[-1]['valid_auc']:.4f}" if "valid_auc" in history[-1] else "")
                  + ("  *" if best_epoch == epoch else ""))
        st = {"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
              "best": best, "best_epoch": best_epoch, "history": history, "best_state": best_state,
              "sched": sched.state_dict() if sched is not None else None,
              "torch_rng": torch.get_rng_state(), "np_rng": rng.bit_generator.state,
              "ema": shadow.state_dict() if shadow is not None else None}
        from .workspace import atomic_path
        with atomic_path(state_path, suffix=".pt") as tmp:
            torch.save(st, tmp)
    model.load_state_dict(best_state)
    model.cpu().eval()
    readout_lambda = None
    if cfg.song_readout and not model.cfg.normalize_output:   # the output layer is linear: refit it on songs
        readout_lambda = refit_output(model, store, tr, va, Y)
    summary = {"best_valid_mse": history[best_epoch]["valid_mse"], "best_epoch": best_epoch + 1,
               "best_valid_auc": history[best_epoch].get("valid_auc"), "epochs_run": len(history),
               "train_songs": len(tr), "valid_songs": len(va), "device": str(device),
               "windows_per_s": n_seen / max(time.time() - t0, 1e-9), "seconds": time.time() - t0,
               "params": sum(p.numel() for p in model.parameters()), "pretrain_losses": pretrain_losses,
               "readout_lambda": readout_lambda, "preset": preset, "train_audio_s": train_audio_s}
    save_checkpoint(ws.model_path, model, {"train": cfg.to_dict(), "feature": store.cfg.to_dict(),
                                           "history": history, "summary": summary})
    state_path.unlink(missing_ok=True)
    ws.clear_done("evaluate", "index")
    ws.mark_done("train", {"config": cfg.to_dict(), "summary": summary}, outputs=OUTPUTS)
    return summary


def _train_head(ws, cfg, mcfg, store, fac, tr, va, stats, preset, train_audio_s, progress):
    """Training for a frozen pretrained front end: its pooled features are cached once per window
    (:func:`audiovis.models.frozen.pooled_features`), then only the head learns (:mod:`audiovis.models.headfit`)."""
    from .models.frozen import pooled_features
    from .models.headfit import fit_head
    t0 = time.time()
    model = build_model(mcfg).eval()
    for buf, v in zip((model.in_mean, model.in_std), stats[:2]):
        buf.copy_(v)
    pooled = pooled_features(ws, store, model.dataset, progress=progress)
    t1 = time.time()
    va_played = (ws.play_matrix().tocsc()[:, va] > 0).toarray() if cfg.early_stop == "valid_auc" else None
    res = fit_head(model, pooled, store, fac["song_factors"], tr, va, cfg, va_played, fac["user_factors"],
                   progress)
    history, best_epoch = res["history"], res["best_epoch"]
    summary = {"best_valid_mse": history[best_epoch]["valid_mse"], "best_epoch": best_epoch + 1,
               "best_valid_auc": history[best_epoch].get("valid_auc"), "epochs_run": len(history),
               "train_songs": len(tr), "valid_songs": len(va), "device": "cpu",
               "windows_per_s": res["windows_per_s"], "seconds": time.time() - t0, "frontend_seconds": t1 - t0,
               "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "pretrain_losses": None, "readout_lambda": res["readout_lambda"], "preset": preset,
               "train_audio_s": train_audio_s}
    save_checkpoint(ws.model_path, model, {"train": cfg.to_dict(), "feature": store.cfg.to_dict(),
                                           "history": history, "summary": summary})
    ws.clear_done("evaluate", "index")
    ws.mark_done("train", {"config": cfg.to_dict(), "summary": summary}, outputs=OUTPUTS)
    return summary


def load_model(ws: Workspace):
    ws.require("train")
    return load_checkpoint(ws.model_path)
