"""The content model on a pretrained front end: musicnn's layers, then a dense head to the WMF factors.

Input  x [shape=(batch, 96, frames)]: the workspace's log-mel in dB at musicnn's settings (the default front end:
16 kHz, n_fft 512, hop 256, 96 slaney bins, 3 s = 187 frames); :func:`~audiovis.models.musicnn.from_db` maps it
to musicnn's ``log10(1 + 10000 power)``.
musicnn (:class:`~audiovis.models.musicnn.Musicnn`, the wheel's trained weights): ``timbral``, ``temporal``,
``cnn1``-``cnn3`` [shape=(batch, units, frames)], the pooled features (max and mean over time, 1506), the tagger's
own ``penultimate`` (200) and ``tags`` (50 tag probabilities, named units ``tags:rock``).
head   the pooled features and the window's log-mel statistics (:func:`window_stats`: per mel band the mean, std,
mean absolute frame-to-frame change and 90th percentile, which carry loudness, brightness and onset density that
the tagger's features leave out), standardised on the training windows -> ``dense1`` (512, ReLU, dropout) ->
``output`` (the factors, standardised on the training songs as :class:`~audiovis.model.AudioCNN` does).

Every layer is a named child whose output is its activation, as in :class:`~audiovis.model.AudioCNN`, so the
index, dreams, auralisation, listeners, dictionary and counterfactuals use it unchanged. ``frozen`` (the config):
training fits only the head, on the pooled features cached once per window (:mod:`audiovis.models.frozen`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import add_head
from .musicnn import TAGS, Musicnn, batch_match, check_dataset, from_db, pretrained_state

POOLED = 1506


def window_stats(x_db: torch.Tensor) -> torch.Tensor:
    """Per mel band over a window's frames: mean, std, mean absolute change and 90th percentile of the dB log-mel
    [shape=(batch, n_mels, frames)] -> [shape=(batch, 4 * n_mels)] (``evaluate.logmel_stats`` for one window)."""
    x = x_db.float()
    d = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(-1)
    return torch.cat([x.mean(-1), x.std(-1, unbiased=False), d, torch.quantile(x, 0.9, dim=-1)], dim=1)


class MusicnnRegressor(Musicnn):
    def __init__(self, cfg, pretrained_weights: bool = True):
        """``cfg``: an :class:`audiovis.model.ModelConfig` with ``arch='musicnn'``."""
        dataset = check_dataset(cfg.pretrained or "msd")
        super().__init__(n_tags=len(TAGS[dataset]), n_mels=cfg.n_mels)
        if pretrained_weights:
            self.load_state_dict(pretrained_state(dataset), strict=False)
        self.cfg, self.dataset = cfg, dataset
        self.tag_names = TAGS[dataset]
        self.register_buffer("in_mean", torch.zeros(cfg.n_mels, 1))     # dB statistics (dreams' plausible range)
        self.register_buffer("in_std", torch.ones(cfg.n_mels, 1))
        self.head_in = POOLED + 4 * cfg.n_mels
        self.register_buffer("feat_mean", torch.zeros(self.head_in))      # the head's input standardisation
        self.register_buffer("feat_std", torch.ones(self.head_in))
        self.register_buffer("out_mean", torch.zeros(cfg.n_factors))
        self.register_buffer("out_std", torch.ones(cfg.n_factors))
        self.conv_names = ["timbral", "temporal", "cnn1", "cnn2", "cnn3"]
        self.dense_names = add_head(self, self.head_in, cfg.dense, cfg.n_factors, cfg.dropout)
        if cfg.frozen:
            self.freeze()

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.input_bn, self.timbral, self.temporal, self.cnn1, self.cnn2, self.cnn3, self.penultimate,
                self.tags]

    def freeze(self) -> None:
        """The pretrained layers keep their weights and batch-norm statistics (see :meth:`train`)."""
        for m in self.pretrained_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.frozen:                      # frozen layers stay in inference mode (batch norm, dropout)
            for m in self.pretrained_modules():
                m.eval()
        return self

    def layer_sizes(self) -> dict[str, int]:
        """{layer: units} in forward order (the layers audiovis records)."""
        t = self.timbral.conv74.out_channels * 2
        s = len(self.temporal.lengths) * self.temporal.convs[0].out_channels
        m = self.cnn1.conv.out_channels
        out = {"timbral": t, "temporal": s, "cnn1": m, "cnn2": m, "cnn3": m,
               "penultimate": self.penultimate.dense.out_features, "tags": len(self.tag_names)}
        out.update({n: getattr(self, n).linear.out_features for n in self.dense_names})
        out["output"] = self.cfg.n_factors
        return out

    def unit_note(self, layer: str, index: int) -> str | None:
        if layer == "tags" and 0 <= index < len(self.tag_names):
            return f"musicnn {self.dataset.upper()} tag '{self.tag_names[index]}'"
        return None

    def unit_names(self, layer: str) -> list[str] | None:
        """The tags' names (``tags:rock``), None for the other layers."""
        return list(self.tag_names) if layer == "tags" else None

    def pooled(self, x_db: torch.Tensor) -> torch.Tensor:
        """The frozen part's output for the head: (batch, n_mels, frames) dB -> (batch, 1506)."""
        return self.trunk(from_db(x_db))[-1]

    def head(self, feats: torch.Tensor, hidden: bool = False):
        """The head's input (pooled features and window statistics, concatenated) -> raw factors; ``hidden``: the
        pair (last dense layer's activation, raw factors) from the same pass."""
        h = (feats - self.feat_mean) / self.feat_std
        for name in self.dense_names:
            last = h = getattr(self, name)(h)
            h = self.drop(h)
        y = self.output(h) * self.out_std + self.out_mean
        y = F.normalize(y, dim=-1) if self.cfg.normalize_output else y
        return (last, y) if hidden else y

    def forward(self, x):                        # (B, n_mels, T) dB -> (B, n_factors)
        p = self.pooled(x)
        self.tags(self.penultimate(p))           # recorded by hooks (the tagger's own layers); cheap
        return self.head(torch.cat(batch_match(p, window_stats(x)), dim=1))

    def frame_stride(self, layer: str) -> int:
        return 1
