"""audiovis: hear what a content-based music-recommendation network has learned.

The Python API (docs/model.md): ``Workspace`` (storage), ``run_pipeline`` (every stage), ``UnitIndex`` (each
unit's top clips and statistics), ``get_engine`` / ``ColdStart`` (embed and recommend new songs),
``add_songs`` (add them without retraining), ``export_index`` / ``read_export`` (the index as versioned
files), ``load_adapter`` / ``TorchAdapter`` (index a model of your own), ``train_dictionary`` (sparse dictionary
features), ``explain`` (scored explanations) and ``build_listeners`` (the listeners behind each unit).
``import audiovis`` stays light: all but ``Workspace``, the configs and the errors are imported on first use
(torch only then).
"""
from .config import FactorConfig, FeatureConfig
from .errors import AudioError, AudiovisError, DataError, DependencyError, ParameterError, WorkspaceError
from .workspace import Workspace

__version__ = "0.1.0"
__all__ = ["Workspace", "run_pipeline", "UnitIndex", "ColdStart", "get_engine", "add_songs", "export_index",
           "read_export", "load_adapter", "TorchAdapter", "train_dictionary", "explain", "build_listeners",
           "FeatureConfig", "FactorConfig", "AudiovisError", "ParameterError", "AudioError",
           "DataError", "DependencyError", "WorkspaceError", "__version__"]


def __getattr__(name: str):
    """The heavy names of ``__all__``, imported when first asked for (PEP 562)."""
    if name == "run_pipeline":
        from .pipeline import run_pipeline as value
    elif name == "UnitIndex":
        from .index import UnitIndex as value
    elif name in ("ColdStart", "get_engine"):
        from . import coldstart
        value = getattr(coldstart, name)
    elif name == "add_songs":
        from .append import add_songs as value
    elif name in ("export_index", "read_export"):
        from . import export
        value = getattr(export, name)
    elif name in ("load_adapter", "TorchAdapter"):
        from . import adapters
        value = getattr(adapters, name)
    elif name == "train_dictionary":
        from .dictionary import train_dictionary as value
    elif name == "explain":
        from .explain import explain as value
    elif name == "build_listeners":
        from .listeners import build_listeners as value
    else:
        raise AttributeError(f"module 'audiovis' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
