"""The local engine: the single-process (or local process pool) functions, unchanged."""
from __future__ import annotations

from ..features import featurize  # noqa: F401  (re-exported)
from ..index import build_index  # noqa: F401  (re-exported)


def embed(workspace, files, per_window: bool = False):
    """Embed files with the workspace's cached cold-start engine -> (embeddings, failed)."""
    from ..coldstart import get_engine
    return get_engine(workspace).embed(files, per_window=per_window)
