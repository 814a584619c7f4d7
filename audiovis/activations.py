"""Recording activations with forward hooks that are always removed (captum-style) and that keep only their
own thread's forward pass (the page runs one model for every visitor, in several threads)."""
from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn as nn


class Recorder:
    """Record the outputs of named layers of a model.

    Examples
    --------
    >>> acts, out = Recorder(model, ["conv2", "dense1"]).record(x)
    >>> acts["conv2"].shape   # (batch, channels, time)
    """

    def __init__(self, model: nn.Module, layers: str | list[str]):
        self.model = model
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        modules = dict(model.named_modules())              # "conv2", or a nested "encoder.block3"
        missing = [name for name in self.layers if not name or name not in modules]
        if missing:
            from .errors import ParameterError
            raise ParameterError(f"no layer named {missing[0]!r}; layers are "
                                 f"{', '.join(n for n, _ in model.named_children())} (or their submodules)")
        self._modules = [modules[n] for n in self.layers]
        self._handles: list = []
        self._thread: int | None = None
        self.activations: dict[str, torch.Tensor] = {}

    def __enter__(self) -> Recorder:
        self._thread = threading.get_ident()
        for name, mod in zip(self.layers, self._modules):
            self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name):
        def hook(_module, _inp, out):
            # The page serves every visitor from one model in several threads: while this recorder's hooks are
            # on, another thread's forward pass fires them too. Keep only this thread's own pass.
            if threading.get_ident() == self._thread:
                self.activations[name] = out
        return hook

    def record(self, x: torch.Tensor, grad: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run ``x`` through the model; returns ({layer: activation}, model output). Hooks are removed after."""
        self.activations = {}
        with self, torch.set_grad_enabled(grad):
            out = self.model(x)
        return dict(self.activations), out


@torch.no_grad()
def song_means(model: nn.Module, store, layer: str, batch_size: int = 256) -> np.ndarray:
    """A layer's activation averaged over each song's windows (a song embedding).

    Parameters
    ----------
    model : AudioCNN;  store : FeatureStore;  layer : str   a dense layer or ``"output"``

    Returns
    -------
    E : np.ndarray [shape=(store.n_songs, layer width)]   zeros for songs without windows
    """
    model.eval()
    n_windows, E, counts = len(store.windows), None, np.zeros(store.n_songs)
    for i in range(0, n_windows, batch_size):
        w = np.arange(i, min(i + batch_size, n_windows))
        acts, _ = Recorder(model, layer).record(torch.from_numpy(store.batch(w)))
        A = acts[layer].float().cpu().numpy()
        if E is None:
            E = np.zeros((store.n_songs, A.shape[1]))
        np.add.at(E, store.windows[w, 0], A)
        np.add.at(counts, store.windows[w, 0], 1)
    return E / np.maximum(counts, 1)[:, None]


def reduce_windows(model, acts: dict[str, torch.Tensor], layers: dict[str, int], hop_s: float,
                   window_frames: int):
    """The one reduction from recorded layer outputs to per-window unit activations (the catalogue's index,
    cold-start queries and added songs all use it).

    Parameters
    ----------
    acts : dict of torch.Tensor
        Each layer's output, [shape=(b, C, T)] for conv layers, [shape=(b, U)] for dense and output layers.
    window_frames : int
        Frames per window (the dense layers' peak is placed at the window's centre).

    Returns
    -------
    A, peak : np.ndarray [shape=(b, n_units)]
        As :func:`window_activations`; ``output`` units are the factors themselves (de-standardised), not the
        model's standardised outputs.
    """
    cols, peaks = [], []
    centre = window_frames * hop_s / 2
    for name in layers:
        a = acts[name].float()
        if name == "output" and hasattr(model, "out_std"):   # the factors themselves, not their standardised form
            a = a * model.out_std + model.out_mean
        if a.ndim == 3:                                   # (b, C, T)
            v, i = a.max(dim=-1)
            # the CNN knows its strides; another model's time steps are taken to tile the window evenly
            stride = model.frame_stride(name) if hasattr(model, "frame_stride") else window_frames / a.shape[-1]
            cols.append(v)
            peaks.append((i.float() * stride + stride / 2) * hop_s)
        else:                                             # (b, U)
            cols.append(a)
            peaks.append(torch.full_like(a, centre))
    return torch.cat(cols, 1).cpu().numpy(), torch.cat(peaks, 1).cpu().numpy()
