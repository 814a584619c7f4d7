"""Feature visualisation for the content CNN: filters, dreamed audio, auralisation, backward queries, unit labels.

A lucent-style split:

* :mod:`.objectives`  what to maximise: a unit (``"conv2:17"``), a whole layer (``"conv2"``), one output factor
  (``"output:3"``), or a target output vector (backward queries)
* :mod:`.param`       how the input is parameterised (a bounded log-mel inside a plausible dB range)
* :mod:`.transforms`  robustness transforms (time/frequency jitter) and the total-variation penalty
* :mod:`.render`      the optimisation loop and log-mel -> audio (mel inversion + Griffin-Lim)
* :mod:`.filters`     first-layer filters as images and their frequency responses
* :mod:`.dream`       activation maximisation with an on-disk cache per unit and settings
* :mod:`.auralise`    what a unit hears inside a real clip (Choi et al. 2016)
* :mod:`.backward`    the input the network maps to a listener's taste, a factor or a song's factors
* :mod:`.dissect`     network dissection: every unit scored against concepts (Bau et al. 2017)

Every method ends in something to look at (a spectrogram) and to listen to (audio).
"""
__all__ = ["Objective", "parse_objective"]


def __getattr__(name):  # lazy: ``audiovis --help`` must not import torch
    if name in __all__:
        from . import objectives
        return getattr(objectives, name)
    raise AttributeError(name)
