"""Unit names: ``"layer:unit"`` strings such as ``"conv2:17"``, ``"dense1:3"``, ``"output:0"``; features of a
layer's dictionary (:mod:`audiovis.dictionary`) are units of the layer ``"dense1.dict"``: ``"dense1.dict:17"``."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError

DICT_SUFFIX = ".dict"      # "dense1.dict": the dictionary features of layer dense1


def dictionary_base(layer: str) -> str | None:
    """The layer a dictionary layer was learned from (``"dense1.dict"`` -> ``"dense1"``), None for a model layer."""
    return layer[:-len(DICT_SUFFIX)] if layer.endswith(DICT_SUFFIX) and len(layer) > len(DICT_SUFFIX) else None


class Layers(dict):
    """{layer name: number of units} in forward order, and ``names``: {layer: [unit name per unit]} for the layers
    whose units a model names (musicnn's ``tags``), so that ``"tags:rock"`` parses wherever the layers go."""

    def __init__(self, *args, names: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.names = {k: list(v) for k, v in (names or {}).items()}


@dataclass(frozen=True)
class Unit:
    layer: str
    index: int

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}"


def parse_unit(name: str, layers: dict[str, int] | None = None, names: dict[str, list[str]] | None = None) -> Unit:
    """Parse ``"conv2:17"``; with ``layers`` ({name: n_units}) also check the layer and range; with ``names``
    ({layer: [unit names]}, a model's named units such as musicnn's tags; by default ``layers.names`` when
    ``layers`` is a :class:`Layers`) also ``"tags:female vocalists"``."""
    names = names if names is not None else getattr(layers, "names", None)
    layer, sep, idx = str(name).strip().partition(":")
    layer, idx = layer.strip(), idx.strip()
    if names and layer in names and idx in names[layer]:
        idx = str(names[layer].index(idx))
    try:
        if not sep:
            raise ValueError
        unit = Unit(layer, int(idx))
    except ValueError:
        hint = f" or '{layer}:<name>' with a name of {', '.join(names[layer][:5])}..." \
            if names and layer in names else ""
        raise ParameterError(f"unit name {name!r} is not of the form 'layer:index', e.g. 'conv2:17'{hint}") \
            from None
    if layers is not None:
        if unit.layer not in layers:
            raise ParameterError(f"unit {name!r}: no layer {unit.layer!r}; layers are {', '.join(layers)}")
        if not 0 <= unit.index < layers[unit.layer]:
            raise ParameterError(f"unit {name!r}: index {unit.index} out of range; "
                                 f"layer {unit.layer!r} has units 0..{layers[unit.layer] - 1}")
    return unit


def layer_sizes(model) -> dict[str, int]:
    """{layer name: number of units} in forward order, for every layer audiovis records."""
    if hasattr(model, "layer_sizes"):                 # a network on a pretrained front end says it itself
        sizes = model.layer_sizes()
        return Layers(sizes, names={k: v for k in sizes if (v := model.unit_names(k)) is not None})
    out = Layers()
    for name in model.conv_names:
        out[name] = model.cfg.channels[model.conv_names.index(name)]
    for name in model.dense_names:
        out[name] = model.cfg.dense[model.dense_names.index(name)]
    out["output"] = model.cfg.n_factors
    return out
