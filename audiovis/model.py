"""The content model: a Dieleman-style CNN from a log-mel window to a latent-factor vector.

Input  x [shape=(batch, n_mels, n_frames)]  mel bins are channels, convolutions run over time.
conv_l (Conv1d, 'same' padding, ReLU; max-pool after all but the last) -> global temporal pooling (mean, max, L2)
-> dense_l (Linear, ReLU, dropout) -> output (Linear, n_factors).

Every layer whose activations are worth hearing is a named child module (``conv1``... ``dense1``... ``output``)
whose forward output is that activation; see :mod:`audiovis.units`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Config
from .models.blocks import add_head


@dataclass
class ModelConfig(Config):
    n_mels: int = 128
    n_frames: int = 129               # 3 s at 22,050 Hz, hop 512
    channels: tuple = (64, 96, 128)   # conv channels
    kernel: int = 4
    pools: tuple = (4, 2)             # max-pool after conv1, conv2, ... (len = len(channels) - 1)
    dense: tuple = (256,)
    n_factors: int = 32
    dropout: float = 0.3
    normalize_output: bool = False    # unit-normalise the factor vector (Spotify 2014)
    level_norm: bool = False          # take away each window's mean level (dB over all bins and frames) first
    tempo_lags: int = 0               # > 0: append the onset envelope's autocorrelation at lags 1..tempo_lags frames
    arch: str = "dieleman"            # "dieleman" (AudioCNN, trained from scratch) or "musicnn" (MusicnnRegressor)
    pretrained: str = ""              # musicnn: the tagger whose weights start the network ("msd" or "mtt")
    frozen: bool = True               # musicnn: the pretrained layers stay as trained (only the head learns)


PRESETS = {
    # trains on the demo in minutes on 2 CPU cores
    "small": dict(channels=(64, 96, 128), pools=(4, 2), dense=(256,), dropout=0.5),
    # twice the channels and dense units (about 4x the weights, 2x the training time on a CPU): real catalogues
    # of a few hundred songs gain from it (docs/experiments.md, session 8)
    "wide": dict(channels=(128, 128, 256), pools=(4, 2), dense=(512,), dropout=0.5),
    # Dieleman 2014: 256, 256, 512, 512 channels, pools 4, 2, 2; dense 2048, 2048; for a GPU
    "paper": dict(channels=(256, 256, 512, 512), pools=(4, 2, 2), dense=(2048, 2048), dropout=0.5),
    # the pretrained musicnn tagger (MSD) as the front end, frozen; a dense head of 512 units to the factors
    # (audiovis.models.regressor; docs/model.md)
    "musicnn": dict(arch="musicnn", pretrained="msd", frozen=True, channels=(), pools=(), dense=(512,),
                    dropout=0.5),
    # the same, then every layer fine-tuned on random crops (slow on a CPU: a GPU's job)
    "musicnn-tune": dict(arch="musicnn", pretrained="msd", frozen=False, channels=(), pools=(), dense=(512,),
                         dropout=0.5),
}
PRETRAINED_PRESETS = ("musicnn", "musicnn-tune")

# preset "auto" (the default): the size is chosen from the hours of training audio. Measured on two worlds
# (docs/experiments.md, session 9): the demo (1.9 h of training audio) is better with `small`, the real-music
# world (3.6 h) with `wide`; more distinct audio supports more weights.
AUTO_WIDE_HOURS = 3.0


def auto_preset(train_audio_s: float) -> str:
    """The preset ``"auto"`` stands for: ``"wide"`` from :data:`AUTO_WIDE_HOURS` of training audio, else
    ``"small"``."""
    return "wide" if train_audio_s >= AUTO_WIDE_HOURS * 3600 else "small"


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)   # 'same' length for even kernels too
        self.conv = nn.Conv1d(c_in, c_out, kernel)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x):                      # (B, C_in, T) -> (B, C_out, T)
        return F.relu(self.bn(self.conv(F.pad(x, self.pad))))


class AudioCNN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert len(cfg.pools) == len(cfg.channels) - 1, "one pool between each pair of conv layers"
        self.cfg = cfg
        # input standardisation per mel bin, fitted on training windows and stored in the checkpoint
        self.register_buffer("in_mean", torch.zeros(cfg.n_mels, 1))
        self.register_buffer("in_std", torch.ones(cfg.n_mels, 1))
        # target standardisation: the output layer predicts standardised factors, forward() returns raw factors
        self.register_buffer("out_mean", torch.zeros(cfg.n_factors))
        self.register_buffer("out_std", torch.ones(cfg.n_factors))
        c_in = cfg.n_mels
        self.conv_names = []
        for i, c in enumerate(cfg.channels, start=1):
            self.add_module(f"conv{i}", ConvBlock(c_in, c, cfg.kernel))
            self.conv_names.append(f"conv{i}")
            c_in = c
        # mean, max and L2 pooling (+ the onset autocorrelation) -> dense layers -> factors
        self.dense_names = add_head(self, 3 * c_in + cfg.tempo_lags, cfg.dense, cfg.n_factors, cfg.dropout)

    def features(self, x):
        """(B, n_mels, T) -> pooled (B, 3 * C_last + tempo_lags)."""
        if self.cfg.level_norm:                # loudness-invariant: every window at the training windows' mean level
            x = x - x.mean(dim=(1, 2), keepdim=True) + self.in_mean.mean()
        h = z = (x - self.in_mean) / self.in_std
        for i, name in enumerate(self.conv_names):
            h = getattr(self, name)(h)         # (B, C_i, T_i)
            if i < len(self.cfg.pools):
                h = F.max_pool1d(h, self.cfg.pools[i], ceil_mode=True)  # (B, C_i, ceil(T_i / pool_i))
        pooled = [h.mean(-1), h.amax(-1), torch.sqrt((h ** 2).mean(-1) + 1e-8)]
        if self.cfg.tempo_lags:                # a tempogram: periodicity of the spectral flux
            flux = F.relu(z[:, :, 1:] - z[:, :, :-1]).mean(1)
            flux = flux - flux.mean(-1, keepdim=True)
            n = flux.shape[-1]
            f = torch.fft.rfft(flux, n=2 * n)
            ac = torch.fft.irfft(f * f.conj(), n=2 * n)[:, :n]
            pooled.append(ac[:, 1:self.cfg.tempo_lags + 1] / (ac[:, :1] + 1e-6))
        return torch.cat(pooled, dim=1)

    def forward(self, x):                      # (B, n_mels, T) -> (B, n_factors)
        h = self.features(x)
        for name in self.dense_names:
            h = self.drop(getattr(self, name)(h))
        y = self.output(h) * self.out_std + self.out_mean
        return F.normalize(y, dim=-1) if self.cfg.normalize_output else y

    def frame_stride(self, layer: str) -> int:
        """Input frames per time step of a conv layer's output."""
        i = self.conv_names.index(layer)
        s = 1
        for p in self.cfg.pools[:i]:
            s *= p
        return s


def build_model(cfg: ModelConfig, pretrained_weights: bool = True) -> nn.Module:
    """The network a config describes: :class:`AudioCNN`, or a
    :class:`~audiovis.models.regressor.MusicnnRegressor` (with the wheel's trained weights unless
    ``pretrained_weights`` is False, as when a checkpoint's own weights are loaded next)."""
    if cfg.arch == "dieleman":
        return AudioCNN(cfg)
    if cfg.arch == "musicnn":
        from .models.regressor import MusicnnRegressor
        return MusicnnRegressor(cfg, pretrained_weights=pretrained_weights)
    from .errors import ParameterError
    raise ParameterError(f"model architecture {cfg.arch!r} is unknown (dieleman or musicnn)")


def save_checkpoint(path, model: AudioCNN, extra: dict | None = None) -> None:
    """A checkpoint stores its config, so any later stage rebuilds the model from the file alone."""
    from .workspace import atomic_path
    obj = {"config": model.cfg.to_dict(), "state_dict": model.state_dict(), **(extra or {})}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint (loaded with ``weights_only=True``); returns (model in eval mode, extra)."""
    import pickle

    from .errors import WorkspaceError
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise WorkspaceError(f"checkpoint '{path}' not found") from None
    except pickle.UnpicklingError as e:
        why = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        raise WorkspaceError(
            f"checkpoint '{path}' was refused: it holds objects other than tensors and plain data, which audiovis "
            f"never unpickles (weights_only=True) since loading them could run arbitrary code"
            + (f" ({why[0]})" if why else "") + "; only load checkpoints written by `audiovis train`") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise WorkspaceError(f"checkpoint '{path}' is truncated or not a checkpoint ({type(e).__name__}: "
                             f"{str(e).strip()[:200]}); rerun `audiovis train` to rebuild it") from None
    if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
        raise WorkspaceError(f"checkpoint '{path}' is not an audiovis checkpoint (no config and state_dict)")
    model = build_model(ModelConfig.from_dict(obj["config"]), pretrained_weights=False)
    state = dict(model.state_dict())       # buffers added after a checkpoint was written keep their defaults
    state.update(obj["state_dict"])
    model.load_state_dict(state)
    model.eval()
    return model, {k: v for k, v in obj.items() if k not in ("config", "state_dict")}
