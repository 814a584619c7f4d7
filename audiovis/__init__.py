"""audiovis: hear what a content-based music-recommendation network has learned."""
from .config import FactorConfig, FeatureConfig
from .errors import AudioError, AudiovisError, DataError, DependencyError, ParameterError, WorkspaceError
from .workspace import Workspace

__version__ = "0.1.0"
__all__ = ["Workspace", "FeatureConfig", "FactorConfig", "AudiovisError", "ParameterError", "AudioError",
           "DataError", "DependencyError", "WorkspaceError", "run_pipeline", "__version__"]


def run_pipeline(*args, **kwargs):
    """Run every stage (see :func:`audiovis.pipeline.run_pipeline`)."""
    from .pipeline import run_pipeline as _run
    return _run(*args, **kwargs)
