import numpy as np
import scipy.sparse as sp

from audiovis.config import FactorConfig
from audiovis.factors import WMF, assign_splits, load_factors
from audiovis.workspace import Workspace


def test_confidence_is_paper_form():
    R = sp.csr_matrix(np.array([[0, 1, 10]], dtype=np.float32))
    C = WMF(FactorConfig(alpha=2.0, eps=1.0)).confidence(R)
    np.testing.assert_allclose(C.data, 1 + 2 * np.log1p([1, 10]), rtol=1e-6)


def test_wmf_recovers_block_structure():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 20)
    R = (groups[:, None] == groups[None, :]) & (rng.random((40, 40)) < 0.6)
    m = WMF(FactorConfig(factors=4, iterations=10, regularization=0.01)).fit(sp.csr_matrix(R.astype(np.float32)))
    S = m.user_factors @ m.item_factors.T
    assert S[groups[:, None] == groups[None, :]].mean() > S[groups[:, None] != groups[None, :]].mean() + 0.3


def test_splits_are_by_song_and_seeded():
    n = np.array([3] * 50 + [0] * 5)
    a = assign_splits(n, FactorConfig(test_fraction=0.2, valid_fraction=0.1, random_state=1))
    b = assign_splits(n, FactorConfig(test_fraction=0.2, valid_fraction=0.1, random_state=1))
    assert (a == b).all()
    assert (a[50:] == "none").all() and (a == "test").sum() == 10 and (a == "valid").sum() == 5


def test_held_out_songs_have_no_factors_from_their_plays(built_ws):
    fac = load_factors(Workspace(built_ws[0]))
    test = fac["split"] == "test"
    assert test.any()
    # the train-only fit never saw the held-out songs: their factors stay at the zero solution
    assert np.abs(fac["song_factors"][test]).max() < 1e-3 < np.abs(fac["song_factors_full"][test]).max()
