"""Network families: the pretrained musicnn taggers (:mod:`.musicnn`) and the TensorFlow checkpoint reader they
are loaded with (:mod:`.tensorbundle`). The Dieleman CNN trained from scratch is :mod:`audiovis.model`."""
