"""Hear why: attribution of a unit or a recommendation to the parts of one clip, heard as audio.

* :mod:`.network`       any differentiable model (the workspace's CNN, the musicnn content model, a
  :class:`~audiovis.adapters.TorchAdapter`) as a function of one window's log-mel grid; clip windows
* :mod:`.targets`       what to explain: a unit's activation, a listener's cold-start score, the similarity to a song
* :mod:`.attribution`   Captum's integrated gradients, GradientSHAP and occlusion on the time x mel-band grid
* :mod:`.masking`       the clip's most attributed cells kept or removed, heard from the original audio
* :mod:`.faithfulness`  deletion curves against random deletion, and their areas
* :mod:`.layerwalk`     one clip through every layer (after CNN Explainer)
* :mod:`.why`           all of it for a workspace song or a file (the CLI's ``attribute`` and the page)
* :mod:`.render`        the pictures
"""
