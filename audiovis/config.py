"""Dataclass configs per stage; each is saved next to its stage's outputs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class Config:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


@dataclass
class FeatureConfig(Config):
    """The paper's front end: log-mel, 128 bins, window 1024, hop 512 at 22,050 Hz, 3 s windows."""

    sr: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    window_s: float = 3.0
    max_duration: float = 1800.0

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * self.sr / self.hop_length))

    def frames_to_seconds(self, frames):
        return frames * self.hop_length / self.sr


@dataclass
class FactorConfig(Config):
    """Weighted matrix factorisation (Hu, Koren & Volinsky 2008) with implicit's ALS.

    Confidence c_ui = 1 + alpha * log(1 + r_ui / eps) for observed plays, 1 for the rest (the NIPS 2013 paper's
    form; implicit weights observed entries by the value it is given, so audiovis passes c_ui itself).
    Preference p_ui = 1[r_ui > 0]; L2 regularisation lambda on both factor matrices.
    """

    factors: int = 32
    regularization: float = 0.1
    alpha: float = 2.0
    eps: float = 1.0
    iterations: int = 20
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    normalize: bool = False
    random_state: int = 0
