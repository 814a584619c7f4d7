"""Dataclass configs per stage; each is saved next to its stage's outputs.

They are the one place of the stages' defaults: ``audiovis``'s stage options are generated from their fields
(:mod:`audiovis.cli`: ``window_s`` is ``--window-s``, with the field's ``help``), so a default changed here is
the command line's default too. This module imports no torch: ``audiovis --help`` stays fast.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


class Config:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def setting(default, help: str, *, flag: str | None = None, choices: tuple | None = None):
    """A config field with its command-line help; ``flag``: the option's name when it is not the field's (two
    fields with one flag are one option that sets both), ``choices``: the values the option accepts."""
    meta = {"help": help}
    if flag is not None:
        meta["flag"] = flag
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


@dataclass
class FeatureConfig(Config):
    """The front end: log-mel power in dB, the input representation the pretrained musicnn taggers were trained on
    (16 kHz, n_fft 512, hop 256, 96 slaney mel bins; :mod:`audiovis.models.musicnn` maps dB to its
    ``log10(1 + 10000 power)``), cut into 3 s windows (187 frames). Dieleman's 2014 front end (22,050 Hz, n_fft
    1024, hop 512, 128 bins) is ``--sr 22050 --n-fft 1024 --hop-length 512 --n-mels 128``; the from-scratch CNN
    presets train on either, the musicnn presets need this one."""

    sr: int = setting(16000, "sample rate the audio is decoded at (Hz)")
    n_fft: int = setting(512, "FFT window (samples)")
    hop_length: int = setting(256, "hop between frames (samples)")
    n_mels: int = setting(96, "mel bands")
    fmin: float = setting(0.0, "lowest mel frequency (Hz)")
    fmax: float | None = setting(None, "highest mel frequency (Hz; default: sr / 2)")
    window_s: float = setting(3.0, "window length in seconds")
    max_duration: float = setting(1800.0, "longest song decoded (seconds); a longer one is skipped")

    @property
    def window_frames(self) -> int:
        """Frames per window: ``floor(window_s * sr / hop_length)`` (187 at the defaults, as musicnn's patches;
        129 at 22,050 Hz and hop 512)."""
        return int(self.window_s * self.sr / self.hop_length + 1e-6)

    def frames_to_seconds(self, frames):
        return frames * self.hop_length / self.sr


@dataclass
class FactorConfig(Config):
    """Weighted matrix factorisation (Hu, Koren & Volinsky 2008) with implicit's ALS.

    Confidence c_ui = 1 + alpha * log(1 + r_ui / eps) for observed plays, 1 for the rest (the NIPS 2013 paper's
    form; implicit weights observed entries by the value it is given, so audiovis passes c_ui itself).
    Preference p_ui = 1[r_ui > 0]; L2 regularisation lambda on both factor matrices.
    """

    factors: int = setting(32, "WMF latent factors")
    regularization: float = setting(0.1, "WMF L2 regularisation")
    alpha: float = setting(2.0, "confidence 1 + alpha*log(1 + plays/eps)")
    eps: float = setting(1.0, "plays scale eps of the confidence")
    iterations: int = setting(20, "ALS iterations")
    test_fraction: float = setting(0.2, "songs held out for cold-start evaluation")
    valid_fraction: float = setting(0.1, "songs held out for early stopping")
    normalize: bool = setting(False, "unit-normalise song factors (Spotify 2014)")
    random_state: int = setting(0, "random seed of the song split and of ALS", flag="seed")


@dataclass
class TrainConfig(Config):
    """The content CNN's training (:func:`audiovis.train.train`)."""

    preset: str = setting("musicnn", "the network: musicnn (the pretrained MSD tagger, frozen, with a trained head), "
                                  "musicnn-tune (the same, every layer fine-tuned), or a CNN trained from scratch: "
                                  "auto (small below 3 h of training audio, wide from 3 h), small, wide, paper",
                          choices=("auto", "small", "wide", "paper", "musicnn", "musicnn-tune"))
    # audiovis.model.PRESETS and auto_preset
    epochs: int = setting(60, "training epochs")
    steps_per_epoch: int = setting(60, "batches per epoch")
    batch_size: int = setting(64, "crops per batch")
    lr: float = setting(1e-3, "learning rate (AdamW)")
    weight_decay: float = setting(1e-2, "AdamW weight decay")
    patience: int = setting(10, "stop after this many epochs without a better validation score")
    early_stop: str = setting("valid_mse", "the validation score that picks the epoch: valid_mse (factors' error "
                                           "per window), valid_song_mse (per song, on the mean of its windows) or "
                                           "valid_auc (the cold-start AUC of the validation songs)",
                              choices=("valid_mse", "valid_song_mse", "valid_auc"))
    lr_decay: float = setting(0.3, "multiply the learning rate by this after lr-patience epochs without "
                                   "improvement (1 keeps it constant)")
    lr_patience: int = setting(3, "epochs without improvement before the learning rate decays")
    seed: int = setting(0, "random seed of training")
    device: str = setting("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    num_threads: int = setting(0, "torch CPU threads; 0 = all cores")
    mixup: float = setting(0.0, "Beta(a, a) mixing of two crops in the power domain, targets mixed alike; 0 = off")
    gain_db: float = setting(6.0, "random gain of +-gain-db per crop")
    spec_masks: int = setting(2, "SpecAugment: this many frequency (<= 12 bins) and time (<= 12 frames) masks "
                                 "per crop")
    pretrain_epochs: int = setting(0, "self-supervised contrastive epochs before training (two crops of a song are "
                                      "positives; every song's audio, held-out ones included; no plays); 0 = off")
    pretrain_temperature: float = setting(0.1, "temperature of the contrastive (NT-Xent) loss")
    freeze_conv: bool = setting(False, "after pretraining, train only the dense and output layers")
    crops_per_song: int = setting(1, "crops of one song per training example: the model's outputs for them are "
                                     "averaged and the loss is on that song-level mean (batch-size crops in all)")
    ema: float = setting(0.0, "validate and keep an exponential moving average of the weights (Polyak averaging) "
                              "with this decay per step, e.g. 0.99, warmed up as min(decay, (1 + t) / (10 + t)) "
                              "over steps t; 0 = off")
    song_readout: bool = setting(True, "after training, refit the output layer by ridge on whole songs (each "
                                        "training song's mean last-hidden activation to its factors)")


@dataclass
class IndexConfig(Config):
    """The unit activation index (:func:`audiovis.index.build_index`)."""

    k: int = setting(20, "clips kept per unit in the index")
    batch_windows: int = setting(256, "windows per batch through the model")
    checkpoint_every: int = setting(20, "batches between resumable state saves")
