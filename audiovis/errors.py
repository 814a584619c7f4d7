"""Exception hierarchy: one root, as in librosa."""


class AudiovisError(Exception):
    """Root of every error audiovis raises on purpose."""


class ParameterError(AudiovisError, ValueError):
    """A parameter has a bad value; the message quotes it and says what is allowed."""


class AudioError(AudiovisError):
    """An audio file cannot be used (unreadable, empty, silent, too long...)."""


class DataError(AudiovisError):
    """A listening log, manifest or catalogue cannot be used."""


class WorkspaceError(AudiovisError):
    """A workspace is missing a stage's artifacts or is inconsistent."""


class DependencyError(AudiovisError, ImportError):
    """An installed dependency cannot be loaded (e.g. a torch/torchaudio pair that does not match)."""


class CheckpointError(AudiovisError):
    """A checkpoint file of a pretrained network is missing, truncated or in an unknown format."""
