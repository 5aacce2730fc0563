"""Damaged, hostile and oversized model files get one clear error, a
``ModelFileError`` (a ``ValueError``) naming the file, before anything large is
read or built."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skebm
from skebm._model_file import MAX_INFLATION
from skebm.datasets import make_two_moons
from skebm.exceptions import ModelFileError, UnknownComponentError
from tests._helpers import small_estimator


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.skebm"
    est = small_estimator(random_state=0, max_iter=1, early_stopping=False)
    skebm.save(est.fit(make_two_moons(100, random_state=0)), path)
    return path.read_bytes()


def _rewritten(model_bytes: bytes, **members) -> bytes:
    """The model file with some members replaced (bytes) or edited (callables)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(model_bytes)) as zin,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for name in zin.namelist():
            data = zin.read(name)
            change = members.get(name.replace(".", "_"))
            if callable(change):
                data = change(data)
            elif change is not None:
                data = change
            zout.writestr(name, data)
    return out.getvalue()


def _huge_layers(width: int):
    """An edit of the JSON declaring two hidden layers of ``width`` units."""

    def edit(data):
        metadata = json.loads(data)
        metadata["params"]["energy_params"] = {
            "__dict__": {"hidden_layer_sizes": {"__tuple__": [width, width]}}
        }
        return json.dumps(metadata).encode()

    return edit


def _zero_stride(data):
    """An edit of the tensors: one energy weight becomes a 1e9-element view of a
    single stored number."""
    tensors = torch.load(io.BytesIO(data), weights_only=True)
    name = next(iter(tensors["energy"]))
    tensors["energy"][name] = torch.zeros(1).expand(10**9)
    out = io.BytesIO()
    torch.save(tensors, out)
    return out.getvalue()


def test_a_bad_checksum_is_called_damaged_not_a_pickle(model_bytes, tmp_path):
    raw = bytearray(model_bytes)
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        info = zf.getinfo("tensors.pt")
    # a byte inside the stored tensor member: the CRC no longer matches
    raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    path = tmp_path / "bad.skebm"
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="bad.skebm.*damaged") as caught:
        skebm.load(path)
    assert "pickle" not in str(caught.value)
    assert caught.value.__cause__ is not None


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_files_load_or_raise_one_clear_error(model_bytes, tmp_path, data):
    raw = bytearray(model_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[at] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:at]
    else:
        raw[at : at + 64] = bytes(len(raw[at : at + 64]))
    path = tmp_path / "damaged.skebm"
    path.write_bytes(bytes(raw))
    try:
        est = skebm.load(path)
    except (ModelFileError, UnknownComponentError) as exc:
        assert isinstance(exc, ValueError)
        return
    if hasattr(est, "energy_"):  # what loads works
        assert np.all(~np.isnan(est.score_samples(np.zeros((2, 2)))))


def test_a_member_that_inflates_enormously_is_refused_unread(model_bytes, tmp_path):
    """64 MiB of zeros are stored in about 64 kB: refused before inflating."""
    bomb = _rewritten(model_bytes, tensors_pt=bytes(64 * 2**20))
    path = tmp_path / "bomb.skebm"
    path.write_bytes(bomb)
    assert path.stat().st_size < 2**20
    with pytest.raises(ModelFileError, match=f"inflate.*{MAX_INFLATION:.0f} times"):
        skebm.load(path)


def test_a_huge_string_dtype_in_the_json_is_refused(model_bytes, tmp_path):
    def huge_strings(data):
        metadata = json.loads(data)
        metadata["attributes"]["feature_names_in_"] = {
            "__ndarray__": ["a"],
            "dtype": "<U100000000",
        }
        return json.dumps(metadata).encode()

    path = tmp_path / "strings.skebm"
    path.write_bytes(_rewritten(model_bytes, skebm_json=huge_strings))
    with pytest.raises(ModelFileError, match="strings.skebm.*dtype"):
        skebm.load(path)


@pytest.mark.parametrize(
    "content", [b"", b"not a zip", b"PK\x03\x04" + bytes(100)], ids=repr
)
def test_files_that_are_not_model_files(content, tmp_path):
    path = tmp_path / "x.skebm"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="x.skebm"):
        skebm.load(path)


def test_huge_declared_layers_are_refused_before_anything_is_built(
    model_bytes, tmp_path
):
    """Parameters that would build a 4e12-weight network are compared, on the
    meta device, with the tensors actually stored."""
    path = tmp_path / "huge.skebm"
    path.write_bytes(_rewritten(model_bytes, skebm_json=_huge_layers(2_000_000)))
    with pytest.raises(ModelFileError, match="huge.skebm.*does not fit"):
        skebm.load(path)


def test_a_tensor_larger_than_its_storage_is_refused(model_bytes, tmp_path):
    path = tmp_path / "strided.skebm"
    path.write_bytes(_rewritten(model_bytes, tensors_pt=_zero_stride))
    with pytest.raises(ModelFileError, match="strided.skebm.*storage"):
        skebm.load(path)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["__ndarray__", "dtype", "__tuple__", "x"]),
            children,
            max_size=2,
        )
    ),
    max_leaves=6,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(
        [
            "mean_",
            "scale_",
            "n_features_in_",
            "log_partition_",
            "loss_curve_",
            "base_kind_",
            "base_scores_",
            "_train_seed",
            "feature_names_in_",
            "x_",
        ]
    ),
    value=_json_values,
)
def test_hostile_attribute_values_are_refused_or_valid(
    model_bytes, tmp_path, name, value
):
    def edit(data):
        metadata = json.loads(data)
        metadata["attributes"][name] = value
        return json.dumps(metadata).encode()

    path = tmp_path / "hostile.skebm"
    path.write_bytes(_rewritten(model_bytes, skebm_json=edit))
    try:
        est = skebm.load(path)
    except ModelFileError:
        return
    assert not np.isnan(est.score_samples(np.zeros((2, 2)))).any()


#: Loads each file in a child process whose address space is capped at what it
#: uses after importing skebm plus 256 MiB.
_CAPPED_LOAD = """
import resource, sys
import skebm
from skebm.exceptions import ModelFileError
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))
try:
    skebm.load(sys.argv[1])
except ModelFileError:
    print("refused")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_hostile_files_are_refused_within_256_mib(model_bytes, tmp_path):
    files = {
        "bomb": _rewritten(model_bytes, tensors_pt=bytes(512 * 2**20)),
        "layers": _rewritten(model_bytes, skebm_json=_huge_layers(30_000)),
        "strided": _rewritten(model_bytes, tensors_pt=_zero_stride),
    }
    for name, content in files.items():
        path = tmp_path / f"{name}.skebm"
        path.write_bytes(content)
        assert path.stat().st_size < 10 * 2**20
        done = subprocess.run(
            [sys.executable, "-c", _CAPPED_LOAD, str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "SKEBM_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
        assert done.stdout.strip() == "refused", (name, done.stderr[-2000:])
