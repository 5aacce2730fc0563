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
from skebm._model_file import (
    MAX_INFLATION,
    MAX_METADATA_BYTES,
    MAX_METADATA_VALUES,
    MAX_PICKLE_BYTES,
)
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


def _damaged(data, model_bytes: bytes) -> bytes:
    """The model file with one byte flipped, a tail cut off or 64 bytes zeroed."""
    raw = bytearray(model_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[at] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:at]
    else:
        raw[at : at + 64] = bytes(len(raw[at : at + 64]))
    return bytes(raw)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_files_load_or_raise_one_clear_error(model_bytes, tmp_path, data):
    path = tmp_path / "damaged.skebm"
    path.write_bytes(_damaged(data, model_bytes))
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


_attribute_names = st.sampled_from(
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
)


def _with_attribute(model_bytes: bytes, name: str, value) -> bytes:
    def edit(data):
        metadata = json.loads(data)
        metadata["attributes"][name] = value
        return json.dumps(metadata).encode()

    return _rewritten(model_bytes, skebm_json=edit)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=_attribute_names, value=_json_values)
def test_hostile_attribute_values_are_refused_or_valid(
    model_bytes, tmp_path, name, value
):
    path = tmp_path / "hostile.skebm"
    path.write_bytes(_with_attribute(model_bytes, name, value))
    try:
        est = skebm.load(path)
    except ModelFileError:
        return
    assert not np.isnan(est.score_samples(np.zeros((2, 2)))).any()


#: Loads each file named on the command line in this child process, with its
#: address space capped, for that load, at what it already uses plus 256 MiB
#: plus what the file's tensor member inflates to (the model it describes);
#: prints one outcome per file.
_CAPPED_LOADS = """
import gc, resource, sys
import torch
import skebm
from skebm.exceptions import ModelFileError, UnknownComponentError

torch.ones(2**20).add_(1).sum()  # start torch's thread pool before any cap

def address_space():
    return int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()

unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
for argument in sys.argv[1:]:
    path, model_bytes = argument.rsplit("=", 1)
    gc.collect()
    limit = address_space() + 256 * 2**20 + int(model_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    try:
        skebm.load(path)
        outcome = "loaded"
    except (ModelFileError, UnknownComponentError):
        outcome = "refused"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        resource.setrlimit(resource.RLIMIT_AS, unlimited)
    print(outcome.replace(chr(10), " "), flush=True)
"""


def _load_capped(paths) -> list[str]:
    """The outcome of loading each file in a capped child process."""
    arguments = []
    for path in paths:
        assert path.stat().st_size < 10 * 2**20
        try:
            with zipfile.ZipFile(path) as zf:
                model_bytes = zf.getinfo("tensors.pt").file_size
        except (zipfile.BadZipFile, KeyError):
            model_bytes = 0
        arguments.append(f"{path}={model_bytes}")
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED_LOADS, *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "SKEBM_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def _member(model_bytes: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        return zf.read(name)


def _padded_json(model_bytes: bytes, padding: str) -> bytes:
    """The model's JSON with one more top-level key holding ``padding`` (JSON)."""
    text = _member(model_bytes, "skebm.json").decode()
    return (text[: text.rindex("}")] + f', "padding": {padding}}}').encode()


def _padded_tensors(model_bytes: bytes, n_bytes: int) -> bytes:
    """The model's tensors plus ``n_bytes`` of random 0s and 1s, which deflate
    about 6 times: within the inflation limit."""
    tensors = torch.load(
        io.BytesIO(_member(model_bytes, "tensors.pt")), weights_only=True
    )
    generator = torch.Generator().manual_seed(0)
    tensors["padding"] = torch.randint(
        0, 2, (n_bytes,), generator=generator, dtype=torch.uint8
    )
    out = io.BytesIO()
    torch.save(tensors, out)
    return out.getvalue()


def _many_values(n_values: int) -> str:
    """A JSON list of ``n_values - 1`` two-letter strings: about 60 bytes each,
    the most that one counted value can cost."""
    return "[" + ",".join(['"ab"'] * (n_values - 1)) + "]"


def _assemble(path, model_bytes: bytes, stored: bool = False, **members):
    """A model file at ``path`` with some members replaced (``skebm_json=...``,
    ``tensors_pt=...``), each deflated or, with ``stored``, not compressed."""
    with zipfile.ZipFile(path, "w") as zf:
        for member in ("skebm.json", "tensors.pt"):
            content = members.get(member.replace(".", "_"))
            zf.writestr(
                member,
                _member(model_bytes, member) if content is None else content,
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_the_worst_files_under_10_mb_load_within_256_mib(model_bytes, tmp_path):
    """Each limit at its edge, and one step beyond: JSON holding the most values
    (and 3.8 million small ones, about 260 MiB once parsed),
    ASCII JSON parsing to strings of 4 bytes a character, a tensor member of 40
    MiB that inflates 6 times; a zip bomb, huge declared layers and a zero-stride
    tensor."""
    bits = np.random.RandomState(0).randint(0, 2, MAX_METADATA_BYTES - 9999)
    letters = (bits + ord("a")).astype(np.uint8).tobytes().decode()
    # ensure_ascii escapes the emoji, and Python stores the whole string in UCS-4
    wide_characters = json.dumps(letters + "\U0001f600")
    # 16 MiB of empty objects and random two-letter strings that deflate 3 times:
    # 3.8 million values, about 260 MiB once parsed.
    pairs = np.random.RandomState(0).choice(list("abcdefghijklmnop"), (1_900_000, 2))
    small_values = "[" + ",".join(f'{{}},"{a}{b}"' for a, b in pairs) + "]"
    paths = [
        _assemble(
            tmp_path / "most-values.skebm",
            model_bytes,
            stored=True,
            skebm_json=_padded_json(
                model_bytes, _many_values(MAX_METADATA_VALUES - 1000)
            ),
        ),
        _assemble(
            tmp_path / "too-many-values.skebm",
            model_bytes,
            stored=True,
            skebm_json=_padded_json(
                model_bytes, _many_values(MAX_METADATA_VALUES + 100)
            ),
        ),
        _assemble(
            tmp_path / "small-values.skebm",
            model_bytes,
            skebm_json=_padded_json(model_bytes, small_values),
        ),
        _assemble(
            tmp_path / "wide-characters.skebm",
            model_bytes,
            skebm_json=_padded_json(model_bytes, wide_characters),
        ),
        _assemble(
            tmp_path / "inflated-tensors.skebm",
            model_bytes,
            tensors_pt=_padded_tensors(model_bytes, 40 * 2**20),
        ),
    ]
    hostile = {
        "bomb": _rewritten(model_bytes, tensors_pt=bytes(512 * 2**20)),
        "layers": _rewritten(model_bytes, skebm_json=_huge_layers(30_000)),
        "strided": _rewritten(model_bytes, tensors_pt=_zero_stride),
    }
    for name, content in hostile.items():
        paths.append(tmp_path / f"{name}.skebm")
        paths[-1].write_bytes(content)
    outcomes = dict(zip([path.stem for path in paths], _load_capped(paths)))
    assert outcomes == {
        "most-values": "loaded",
        "too-many-values": "refused",
        "small-values": "refused",
        "wide-characters": "loaded",
        "inflated-tensors": "loaded",
        "bomb": "refused",
        "layers": "refused",
        "strided": "refused",
    }


def test_metadata_with_too_many_values_is_refused_before_parsing(model_bytes, tmp_path):
    path = _assemble(
        tmp_path / "values.skebm",
        model_bytes,
        stored=True,
        skebm_json=_padded_json(model_bytes, "[" + "0," * MAX_METADATA_VALUES + "0]"),
    )
    with pytest.raises(ModelFileError, match="values.skebm.*values"):
        skebm.load(path)


def test_metadata_that_is_not_ascii_is_refused(model_bytes, tmp_path):
    path = _assemble(
        tmp_path / "utf8.skebm",
        model_bytes,
        skebm_json=_padded_json(model_bytes, '"é"'),
    )
    with pytest.raises(ModelFileError, match="utf8.skebm.*ASCII"):
        skebm.load(path)


def test_save_refuses_a_model_the_format_could_not_load(tmp_path, monkeypatch):
    """What save writes, load reads: a model whose metadata exceeds the load
    limits is refused at save, and nothing is written."""
    est = small_estimator(random_state=0, max_iter=1, early_stopping=False)
    est.fit(make_two_moons(100, random_state=0))
    monkeypatch.setattr("skebm._model_file.MAX_METADATA_VALUES", 20)
    with pytest.raises(ValueError, match="pickle or joblib"):
        skebm.save(est, tmp_path / "wide.skebm")
    assert not (tmp_path / "wide.skebm").exists()


_huge = st.sampled_from([-1, 0, 2**31, 10**9, 2**62]) | st.integers(-(2**63), 2**63)


def _with_option(model_bytes: bytes, param: str, key: str, value) -> bytes:
    """The model file with ``<param>[key] = value`` (a size or count)."""

    def edit(data):
        metadata = json.loads(data)
        metadata["params"][param] = {"__dict__": {key: value}}
        return json.dumps(metadata).encode()

    return _rewritten(model_bytes, skebm_json=edit)


def _hostile(data, model_bytes: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["damaged", "attribute", "option"]))
    if kind == "damaged":
        return _damaged(data, model_bytes)
    if kind == "attribute":
        name = data.draw(_attribute_names)
        return _with_attribute(model_bytes, name, data.draw(_json_values | _huge))
    param = data.draw(
        st.sampled_from(["energy_params", "base_params", "partition_params"])
    )
    key = data.draw(
        st.sampled_from(
            ["hidden_layer_sizes", "fourier_features", "n_components", "n_chains"]
        )
    )
    size = data.draw(_huge)
    value = {"__tuple__": [size, size]} if key == "hidden_layer_sizes" else size
    return _with_option(model_bytes, param, key, value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_hostile_files_load_within_256_mib(model_bytes, tmp_path, data):
    """Damaged bytes, hostile attributes and huge sizes in the options: each
    file loads or is refused, never past the cap (20 files per child process)."""
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"hostile-{i}.skebm")
        paths[-1].write_bytes(_hostile(data, model_bytes))
    outcomes = _load_capped(paths)
    assert set(outcomes) <= {"loaded", "refused"}, outcomes


def _tensors_with_pickle_of(n_bytes: int) -> bytes:
    """A tensor member whose ``data.pkl`` holds ``n_bytes`` random letters."""
    letters = np.random.RandomState(0).choice(list("abcdefgh"), n_bytes)
    out = io.BytesIO()
    torch.save({"padding": "".join(letters)}, out)
    return out.getvalue()


def test_a_large_pickle_in_the_tensor_part_is_refused_before_unpickling(
    model_bytes, tmp_path
):
    """Unpickling can allocate several times the pickle's size (a list of memo
    references costs 8 bytes per 2-byte opcode): its size is checked first."""
    path = _assemble(
        tmp_path / "pickle.skebm",
        model_bytes,
        tensors_pt=_tensors_with_pickle_of(MAX_PICKLE_BYTES),
    )
    with pytest.raises(ModelFileError, match="pickle.skebm.*pickle.*at most"):
        skebm.load(path)


def test_the_old_single_pickle_tensor_format_is_refused(model_bytes, tmp_path):
    out = io.BytesIO()
    torch.save({}, out, _use_new_zipfile_serialization=False)
    path = _assemble(tmp_path / "old.skebm", model_bytes, tensors_pt=out.getvalue())
    with pytest.raises(ModelFileError, match="old.skebm.*zip format"):
        skebm.load(path)
