"""A model as a differentiable function of one window's log-mel grid, and the clip windows it is explained on.

Every attribution in :mod:`audiovis.interpret` is taken with respect to the cells of the workspace's log-mel
window [shape=(n_mels, frames)] in dB (the front end of ``featurize``: one mel scale, :func:`audiovis.features.
mel_basis`). Models that eat that grid (the workspace's CNN, the musicnn content model, a
:class:`~audiovis.adapters.TorchAdapter` with ``input='logmel'``) are differentiated directly. A
:class:`~audiovis.adapters.TorchAdapter` that eats waveforms hears the clip's own audio with each mel cell's
change in dB applied as a gain on the clip's STFT (the original phase; :func:`audiovis.interpret.masking.
apply_mel_gain`), so its cells mean the same thing: a cell at the clip's own level is the clip, a cell at the
floor is that part taken away.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..activations import Recorder
from ..errors import ParameterError
from ..units import Layers, layer_sizes

FLOOR_PERCENTILE = 5.0   # the floor: this percentile of the clip's cells, its quiet background level
SILENT_DB = 1.0          # a window whose log-mel spans less than this (dB) carries nothing to attribute
MAX_WINDOWS = 64         # windows scanned when the window is chosen for the user


@dataclass
class Window:
    """One clip window: its audio and its log-mel, at the workspace's front end.

    Attributes
    ----------
    y : np.ndarray [shape=(n,)]        audio at ``fcfg.sr`` (``window_s`` long; zero-padded at a song's end)
    S_db : np.ndarray [shape=(n_mels, frames)]   the model's input
    fcfg : FeatureConfig
    start_s : float                    where the window starts in its song
    label : str                        the song id or file name
    """

    y: np.ndarray
    S_db: np.ndarray
    fcfg: object
    start_s: float = 0.0
    label: str = ""

    @property
    def floor_db(self) -> float:
        """The clip's quiet level (:data:`FLOOR_PERCENTILE`): what a removed cell is set to."""
        return float(np.percentile(self.S_db, FLOOR_PERCENTILE))

    @property
    def silent(self) -> bool:
        return float(self.S_db.max() - self.S_db.min()) < SILENT_DB

    @property
    def hop_s(self) -> float:
        return self.fcfg.hop_length / self.fcfg.sr


def window_from_audio(y: np.ndarray, fcfg, start_s: float = 0.0, label: str = "") -> Window:
    """Cut ``window_s`` of audio from ``start_s`` of ``y`` (at ``fcfg.sr``) and compute its log-mel."""
    from ..features import logmel
    n = int(round(fcfg.window_s * fcfg.sr))
    a = max(0, int(round(start_s * fcfg.sr)))
    seg = np.zeros(n, np.float32)
    part = np.asarray(y[a:a + n], np.float32)
    seg[:len(part)] = part
    S = logmel(seg, fcfg.sr, fcfg.n_fft, fcfg.hop_length, fcfg.n_mels, fcfg.fmin, fcfg.fmax)
    return Window(seg, np.ascontiguousarray(S[:, :fcfg.window_frames], np.float32), fcfg, a / fcfg.sr, label)


def windows_of(y: np.ndarray, fcfg, label: str = "", max_windows: int = MAX_WINDOWS) -> list[Window]:
    """The song's windows as ``featurize`` cuts them (consecutive, from 0; at most ``max_windows``, evenly
    spread)."""
    n_win = max(1, int(len(y) / fcfg.sr // fcfg.window_s))
    pick = np.unique(np.linspace(0, n_win - 1, min(n_win, max_windows)).round().astype(int))
    return [window_from_audio(y, fcfg, i * fcfg.window_s, label) for i in pick]


class Network:
    """A model as ``forward(x_db, layers, window) -> ({layer: activation}, output)`` with gradients.

    Parameters
    ----------
    model : torch.nn.Module, optional
        The workspace's model (:func:`audiovis.train.load_model`): eats dB log-mel windows.
    adapter : audiovis.adapters.TorchAdapter, optional
        A model of your own; waveform adapters hear the clip through :func:`~.masking.apply_mel_gain`.
    """

    def __init__(self, model=None, adapter=None):
        from ..adapters import TorchAdapter
        if (model is None) == (adapter is None):
            raise ParameterError("Network needs a model or an adapter (one of them)")
        if adapter is not None and not isinstance(adapter, TorchAdapter):
            raise ParameterError(f"model {getattr(adapter, 'name', adapter)!r} cannot be differentiated: attribution "
                                 f"needs a torch module (the workspace's CNN, or a TorchAdapter from an import "
                                 f"path 'package.module:factory')")
        self.model, self.adapter = model, adapter
        self.module = model if model is not None else adapter.module
        self.module.eval()
        self.name = adapter.name if adapter is not None else "audiovis CNN"
        self._layers = None if adapter is not None else layer_sizes(model)

    @property
    def has_factors(self) -> bool:
        """Whether the output is the latent-factor vector (listener scores and similarities need it)."""
        return self.model is not None

    def layers(self, window: Window | None = None) -> Layers:
        """{layer: units} in forward order (named units such as ``tags:rock`` included)."""
        if self._layers is None:
            ad = self.adapter
            n = int(round((window.fcfg.window_s if window is not None else 3.0) * ad.sr))
            frames = window.S_db.shape[1] if window is not None else 129
            n_mels = window.S_db.shape[0] if window is not None else 128
            sizes = ad.layer_sizes(n, n_mels, frames)
            self._layers = Layers(sizes, names={k: v for k in sizes if (v := ad.unit_names(k)) is not None})
        return self._layers

    def forward(self, x: torch.Tensor, layers: list[str], window: Window) -> tuple[dict, torch.Tensor]:
        """Log-mel windows [shape=(b, n_mels, frames)] dB -> ({layer: activation [shape=(b, units[, time])]},
        output [shape=(b, ...)]), differentiable with respect to ``x`` where gradients are enabled."""
        if self.adapter is not None and self.adapter.input == "waveform":
            from .masking import apply_mel_gain
            g = torch.pow(10.0, (x - torch.from_numpy(window.S_db)) / 20.0)     # each cell's amplitude gain
            x = apply_mel_gain(window, g)
            if self.adapter.sr != window.fcfg.sr:
                import torchaudio.functional as AF
                x = AF.resample(x, window.fcfg.sr, self.adapter.sr)
        acts, out = Recorder(self.module, list(layers)).record(x, grad=torch.is_grad_enabled())
        acts = {k: (a.amax(dim=2) if a.ndim == 4 else a) for k, a in acts.items()}   # as the adapters reduce
        return acts, out


def load_network(ws) -> Network:
    """The model a workspace shows: the adapter it is indexed with, else its trained CNN."""
    from ..adapters import is_adapter_index, workspace_adapter
    if is_adapter_index(ws):
        return Network(adapter=workspace_adapter(ws, indexed=True))
    from ..train import load_model
    model, _ = load_model(ws)
    return Network(model=model)


def load_song_audio(ws, song_or_file: str | os.PathLike, fcfg) -> tuple[np.ndarray, str, int | None]:
    """A workspace song (by id) or an audio file -> (audio at ``fcfg.sr``, label, song index or None)."""
    from ..audio import load
    s = str(song_or_file)
    ids = ws.song_ids()
    if s in ids:
        idx = ids.index(s)
        path, label = ws.resolve_audio(ws.songs()[idx]["path"]), s
    else:
        p = Path(s).expanduser()
        if not p.is_file():
            raise ParameterError(f"{s!r} is neither a song id of the workspace nor an audio file")
        path, label, idx = p, p.name, None
    y = load(path, sr=fcfg.sr, max_duration=fcfg.max_duration, allow_silence=True, on_warning=lambda _m: None)
    return y, label, idx
