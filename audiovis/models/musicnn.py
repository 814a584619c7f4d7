"""musicnn (Pons & Serra, 2019) in PyTorch, with the weights of the ``musicnn`` wheel's trained taggers.

The network, as in the wheel's ``models.py`` (``build_musicnn``, 64 mid-end filters, 200 back-end units):

input    log-mel patch x [shape=(batch, 96, frames)]: 16 kHz, n_fft 512, hop 256, 96 slaney mel bins,
         ``log10(1 + 10000 * power)``; trained on 187-frame (3 s) patches, any length works
front    batch norm of the input; *timbral* filters 7 x 38 and 7 x 67 mel bins (204 each, 'same' in time, valid in
         frequency) and *temporal* filters 128, 64 and 32 frames x 1 bin (51 each, 'same'); each conv -> ReLU ->
         batch norm -> max over frequency: ``timbral`` (408 units) and ``temporal`` (153) [shape=(batch, u, frames)]
mid      three 1-d convolutions of 7 frames over the 561 front-end features, 64 filters each, ReLU then batch norm;
         ``cnn2`` and ``cnn3`` add their input (residual) [shape=(batch, 64, frames)]
pool     max and mean over time of the 753 front- and mid-end features (dense connection) -> 1506 [(batch, 1506)]
back     batch norm, dropout 0.5, dense 200 + ReLU, batch norm = ``penultimate``; dropout, dense 50 + sigmoid = ``tags``

The TensorFlow checkpoints are read by :mod:`audiovis.models.tensorbundle`; TensorFlow is never imported. The
wheel's own extractor casts the mel power to float16 before the log, which overflows to inf on loud bins of real
music; audiovis computes the input in float32 (:func:`from_db`, :func:`logmel`).

>>> net = load_musicnn("msd")                  # MSD_musicnn, 50 Last.fm tags
>>> out = net.features(x)                     # {'timbral', 'temporal', 'cnn1', 'cnn2', 'cnn3', 'pool', ...}
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, DependencyError, ParameterError

SR, N_FFT, HOP_LENGTH, N_MELS, N_FRAMES = 16000, 512, 256, 96, 187
BN_EPS = 1e-3                                   # tf.layers.batch_normalization's default
CHECKPOINTS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
INSTALL = "pip install --no-deps --force-reinstall musicnn==0.1.0 (or `bash scripts/install.sh run.txt`)"
# musicnn/configuration.py of the wheel
TAGS = {
    "msd": ["rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
            "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
            "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
            "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
            "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
            "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy"],
    "mtt": ["guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
            "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
            "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
            "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
            "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral"],
}
LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "pool", "penultimate", "tags")


def check_dataset(dataset: str) -> str:
    d = str(dataset).lower()
    if d not in CHECKPOINTS:
        raise ParameterError(f"musicnn tagger {dataset!r} does not exist; choose one of {', '.join(CHECKPOINTS)}")
    return d


def from_db(x_db: torch.Tensor) -> torch.Tensor:
    """audiovis's log-mel in dB (``10 log10(power)``) -> musicnn's ``log10(1 + 10000 power)``, in float32."""
    p = torch.pow(10.0, x_db.float() / 10.0)
    return torch.log10(1.0 + 10000.0 * p)


def logmel(y: np.ndarray) -> np.ndarray:
    """musicnn's input for mono audio at 16 kHz [shape=(96, frames), float32] (float32 throughout)."""
    from ..features import logmel as logmel_db
    S = logmel_db(np.asarray(y, np.float32), sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS)
    return from_db(torch.from_numpy(S)).numpy()


def batch_match(*ts: torch.Tensor) -> list[torch.Tensor]:
    """Parallel branches to one batch size: a branch of batch 1 is expanded to the others' (an intervention that
    replaces one branch's output for many rows, :mod:`audiovis.listeners`, runs the rest on a single window)."""
    b = max(t.shape[0] for t in ts)
    return [t.expand(b, *t.shape[1:]) if t.shape[0] == 1 and b > 1 else t for t in ts]


def _bn(n: int, d: int = 1) -> nn.Module:
    return (nn.BatchNorm1d if d == 1 else nn.BatchNorm2d)(n, eps=BN_EPS)


class Timbral(nn.Module):
    """Filters 7 frames x 38 and 7 x 67 mel bins (204 each) -> (batch, 408, frames)."""

    def __init__(self, n_mels: int = N_MELS, filters: int = 204):
        super().__init__()
        self.conv74 = nn.Conv2d(1, filters, (7, int(0.4 * n_mels)))
        self.bn74 = _bn(filters, 2)
        self.conv77 = nn.Conv2d(1, filters, (7, int(0.7 * n_mels)))
        self.bn77 = _bn(filters, 2)

    def forward(self, x):                       # x (B, 1, T, n_mels), normalised
        xp = F.pad(x, (0, 0, 3, 3))
        a = self.bn74(F.relu(self.conv74(xp))).amax(dim=3)
        b = self.bn77(F.relu(self.conv77(xp))).amax(dim=3)
        return torch.cat([a, b], dim=1)


class Temporal(nn.Module):
    """Filters 128, 64 and 32 frames x 1 mel bin (51 each, TensorFlow's 'same' padding) -> (batch, 153, frames)."""

    def __init__(self, filters: int = 51, lengths=(128, 64, 32)):
        super().__init__()
        self.lengths = tuple(lengths)
        self.convs = nn.ModuleList(nn.Conv2d(1, filters, (k, 1)) for k in self.lengths)
        self.bns = nn.ModuleList(_bn(filters, 2) for _ in self.lengths)

    def forward(self, x):
        out = []
        for k, conv, bn in zip(self.lengths, self.convs, self.bns):
            xp = F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))
            out.append(bn(F.relu(conv(xp))).amax(dim=3))
        return torch.cat(out, dim=1)


class MidBlock(nn.Module):
    """Conv over 7 frames, ReLU, batch norm; plus the input when ``residual`` -> (batch, filters, frames)."""

    def __init__(self, c_in: int, filters: int = 64, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(c_in, filters, 7)
        self.bn = _bn(filters)
        self.residual = residual

    def forward(self, x):
        h = self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))
        return h + x if self.residual else h


class GlobalPool(nn.Module):
    """Max and mean over time of the dense-connected features: (batch, 753, T) -> (batch, 1506) [max | mean]."""

    def forward(self, h):
        return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)


class Penultimate(nn.Module):
    """Batch norm, dropout, dense + ReLU, batch norm: (batch, 1506) -> (batch, 200)."""

    def __init__(self, d_in: int = 1506, units: int = 200, dropout: float = 0.5):
        super().__init__()
        self.bn_in = _bn(d_in)
        self.dense = nn.Linear(d_in, units)
        self.bn_out = _bn(units)
        self.drop = nn.Dropout(dropout)

    def forward(self, p):
        return self.bn_out(F.relu(self.dense(self.drop(self.bn_in(p)))))


class Tags(nn.Module):
    """Dropout, dense, sigmoid: tag probabilities (batch, n_tags)."""

    def __init__(self, d_in: int = 200, n_tags: int = 50, dropout: float = 0.5):
        super().__init__()
        self.dense = nn.Linear(d_in, n_tags)
        self.drop = nn.Dropout(dropout)

    def forward(self, h):
        return torch.sigmoid(self.dense(self.drop(h)))


class Musicnn(nn.Module):
    """The musicnn tagger; ``forward(x)`` -> tag probabilities, :meth:`features` -> every layer.

    Parameters
    ----------
    n_tags, n_mels, midend, backend : int
        50, 96, 64 and 200 for the wheel's MSD and MTT taggers.
    """

    def __init__(self, n_tags: int = 50, n_mels: int = N_MELS, midend: int = 64, backend: int = 200):
        super().__init__()
        self.input_bn = _bn(1, 2)
        self.timbral = Timbral(n_mels)
        self.temporal = Temporal()
        front = 2 * self.timbral.conv74.out_channels + len(self.temporal.lengths) * self.temporal.convs[0].out_channels
        self.cnn1 = MidBlock(front, midend)
        self.cnn2 = MidBlock(midend, midend, residual=True)
        self.cnn3 = MidBlock(midend, midend, residual=True)
        self.pool = GlobalPool()
        self.penultimate = Penultimate(2 * (front + 3 * midend), backend)
        self.tags = Tags(backend, n_tags)

    def trunk(self, x):
        """x [shape=(batch, n_mels, frames)], musicnn's log scale -> (front, cnn1, cnn2, cnn3, pooled)."""
        z = self.input_bn(x.transpose(1, 2).unsqueeze(1))            # (B, 1, T, n_mels)
        front = torch.cat(batch_match(self.timbral(z), self.temporal(z)), dim=1)  # (B, 561, T)
        c1 = self.cnn1(front)
        c2 = self.cnn2(c1)
        c3 = self.cnn3(c2)
        return front, c1, c2, c3, self.pool(torch.cat(batch_match(front, c1, c2, c3), dim=1))

    def forward(self, x):
        return self.tags(self.penultimate(self.trunk(x)[-1]))

    def features(self, x) -> dict[str, torch.Tensor]:
        """Every layer of :data:`LAYERS`: {name: (batch, units, frames) or (batch, units)}."""
        front, c1, c2, c3, pooled = self.trunk(x)
        pen = self.penultimate(pooled)
        n_t = self.timbral.conv74.out_channels * 2
        return {"timbral": front[:, :n_t], "temporal": front[:, n_t:], "cnn1": c1, "cnn2": c2, "cnn3": c3,
                "pool": pooled, "penultimate": pen, "tags": self.tags(pen)}


def wheel_dir() -> Path:
    """The installed ``musicnn`` package's folder (found without importing it: it imports TensorFlow)."""
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(f"the musicnn wheel is not installed: audiovis reads its trained weights; {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def _verify(folder: Path) -> None:
    """Check the checkpoint files against the wheel's RECORD (sha256), naming a missing or damaged file."""
    records = list(folder.parent.parent.glob("musicnn-*.dist-info/RECORD"))
    for name in (".index", ".data-00000-of-00001"):
        path = folder / name
        if not path.is_file():
            raise DependencyError(f"the musicnn wheel is incomplete: '{path}' is missing; {INSTALL}")
        if not records:
            continue
        rel = f"musicnn/{folder.name}/{name}"
        for line in records[0].read_text(errors="replace").splitlines():
            parts = line.rsplit(",", 2)
            if parts[0] == rel and parts[1].startswith("sha256="):
                want = parts[1][len("sha256="):]
                got = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
                if got != want:
                    raise DependencyError(f"the musicnn wheel's file '{path}' is damaged (its sha256 is not the "
                                          f"one the wheel records); {INSTALL}")


def tf_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the TensorFlow variable names of ``build_musicnn`` to :class:`Musicnn`'s state dict.

    Graph order: ``batch_normalization`` (input), ``_1``/``_2`` timbral, ``_3``-``_5`` temporal, ``_6``-``_8``
    mid-end, ``_9`` pooled features, ``_10`` penultimate; ``conv2d``/``_1`` timbral, ``_2``-``_4`` temporal,
    ``_5``-``_7`` mid-end; ``dense`` penultimate, ``dense_1`` tags. TensorFlow flattens the pooled features as
    (max_0, mean_0, max_1, ...); :class:`GlobalPool` gives (max..., mean...), so those rows are permuted.
    """
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    sd = {}

    def bn(dst, i, perm=None):
        src = "batch_normalization" + (f"_{i}" if i else "")
        for a, b in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                     ("running_var", "moving_variance")):
            v = t[f"{src}/{b}"]
            sd[f"{dst}.{a}"] = v[perm] if perm is not None else v
        sd[f"{dst}.num_batches_tracked"] = torch.tensor(0)

    def conv2d(dst, i):
        src = "conv2d" + (f"_{i}" if i else "")
        sd[f"{dst}.weight"] = t[f"{src}/kernel"].permute(3, 2, 0, 1).contiguous()     # (h, w, in, out) -> torch
        sd[f"{dst}.bias"] = t[f"{src}/bias"]

    def conv1d(dst, i):
        src = f"conv2d_{i}"
        sd[f"{dst}.weight"] = t[f"{src}/kernel"][:, :, 0, :].permute(2, 1, 0).contiguous()   # (7, in, 1, out)
        sd[f"{dst}.bias"] = t[f"{src}/bias"]

    bn("input_bn", 0)
    conv2d("timbral.conv74", 0), bn("timbral.bn74", 1)
    conv2d("timbral.conv77", 1), bn("timbral.bn77", 2)
    for j in range(3):
        conv2d(f"temporal.convs.{j}", 2 + j), bn(f"temporal.bns.{j}", 3 + j)
    for j in range(3):
        conv1d(f"cnn{j + 1}.conv", 5 + j), bn(f"cnn{j + 1}.bn", 6 + j)
    n = t["batch_normalization_9/gamma"].shape[0]
    perm = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])                  # (max | mean) order
    bn("penultimate.bn_in", 9, perm)
    sd["penultimate.dense.weight"] = t["dense/kernel"][perm].T.contiguous()
    sd["penultimate.dense.bias"] = t["dense/bias"]
    bn("penultimate.bn_out", 10)
    sd["tags.dense.weight"] = t["dense_1/kernel"].T.contiguous()
    sd["tags.dense.bias"] = t["dense_1/bias"]
    return sd


_CACHE: dict[str, dict] = {}


def pretrained_state(dataset: str = "msd") -> dict[str, torch.Tensor]:
    """The state dict of the wheel's ``MSD_musicnn`` or ``MTT_musicnn`` (read once per process, verified)."""
    d = check_dataset(dataset)
    if d not in _CACHE:
        folder = wheel_dir() / CHECKPOINTS[d]
        _verify(folder)
        from .tensorbundle import read_checkpoint
        try:
            tensors = read_checkpoint(str(folder) + "/")
        except CheckpointError as e:
            raise DependencyError(f"the musicnn wheel's checkpoint {CHECKPOINTS[d]} cannot be read ({e}); "
                                  f"{INSTALL}") from None
        try:
            _CACHE[d] = tf_state_dict(tensors)
        except KeyError as e:
            raise DependencyError(f"the musicnn checkpoint {CHECKPOINTS[d]} lacks the variable {e}: not the "
                                  f"musicnn 0.1.0 wheel; {INSTALL}") from None
    return _CACHE[d]


def load_musicnn(dataset: str = "msd") -> Musicnn:
    """A :class:`Musicnn` with the wheel's trained weights, in eval mode."""
    net = Musicnn(n_tags=len(TAGS[check_dataset(dataset)]))
    net.load_state_dict({k: v.clone() for k, v in pretrained_state(dataset).items()})
    return net.eval()
