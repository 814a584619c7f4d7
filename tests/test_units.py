import pytest

from audiovis.errors import ParameterError
from audiovis.units import Unit, parse_unit


def test_parse():
    assert parse_unit("conv2:17") == Unit("conv2", 17)
    assert str(parse_unit(" output : 3 ")) == "output:3"


@pytest.mark.parametrize("name,msg", [("conv2", "not of the form"), ("conv9:1", "no layer 'conv9'"),
                                      ("conv1:64", "index 64 out of range")])
def test_bad_names(name, msg):
    with pytest.raises(ParameterError, match=msg):
        parse_unit(name, {"conv1": 64, "output": 8})
