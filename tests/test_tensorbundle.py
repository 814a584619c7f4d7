"""Reading TensorFlow checkpoints without TensorFlow: the wheel's musicnn checkpoint, and damaged files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from audiovis.errors import CheckpointError
from audiovis.models.musicnn import wheel_dir
from audiovis.models.tensorbundle import read_checkpoint, read_index


def test_index_lists_every_variable_with_its_shape():
    idx = read_index(str(wheel_dir() / "MSD_musicnn") + "/")
    assert idx["conv2d/kernel"]["shape"] == (7, 38, 1, 204)
    assert idx["dense/kernel"]["shape"] == (1506, 200)
    assert idx["batch_normalization_9/moving_variance"]["shape"] == (1506,)
    assert all(e["dtype"] == 1 for e in idx.values())                 # float32


def test_read_skips_the_optimizer_and_gives_float_arrays():
    t = read_checkpoint(str(wheel_dir() / "MSD_musicnn") + "/")
    assert not any(k.endswith(("/Adam", "/Adam_1")) or k.startswith("beta") for k in t)
    assert t["dense_1/kernel"].shape == (200, 50) and t["dense_1/kernel"].dtype == np.float32
    assert np.isfinite(t["conv2d_5/kernel"]).all()
    assert (t["batch_normalization_1/moving_variance"] > 0).all()
    one = read_checkpoint(str(wheel_dir() / "MSD_musicnn") + "/", names=["dense_1/bias"])
    np.testing.assert_array_equal(one["dense_1/bias"], t["dense_1/bias"])


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(wheel_dir() / "MSD_musicnn", dst)
    return dst


def test_truncated_index_is_named(copy):
    p = copy / ".index"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"'.*\.index' is not a TensorFlow checkpoint index"):
        read_index(str(copy) + "/")


def test_truncated_data_is_named(copy):
    p = copy / ".data-00000-of-00001"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="does not fit the data file .*truncated or corrupt"):
        read_checkpoint(str(copy) + "/")


def test_missing_files_and_names(copy, tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint index"):
        read_index(str(tmp_path / "nothing") + "/")
    with pytest.raises(CheckpointError, match="lacks"):
        read_checkpoint(str(copy) + "/", names=["no/such/variable"])
