"""Wide data and tensor inputs: scoring memory follows the rows passed, huge full
covariances are refused with the way out, and tensors of any floating dtype or
with gradients are accepted."""

import numpy as np
import pytest
import torch

from skebm.bases import fit_base
from skebm.datasets import make_two_moons
from skebm.utils._torch import INFERENCE_CHUNK, evaluate_in_chunks, inference_chunk
from tests._helpers import small_estimator

X = make_two_moons(200, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    return small_estimator(random_state=0).fit(X)


@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16]
)
def test_tensors_of_any_floating_dtype_score_like_their_values(fitted, dtype):
    tensor = torch.as_tensor(X[:10], dtype=dtype)
    expected = fitted.score_samples(tensor.to(torch.float64).numpy())
    np.testing.assert_allclose(fitted.score_samples(tensor), expected, rtol=1e-6)


def test_a_tensor_that_requires_grad_is_scored_and_fitted(fitted):
    tensor = torch.tensor(X, requires_grad=True)
    np.testing.assert_array_equal(fitted.score_samples(tensor), fitted.score_samples(X))
    small_estimator(max_iter=1, random_state=0).fit(tensor)
    assert tensor.grad is None


def test_the_chunk_shrinks_with_the_number_of_features_only():
    assert inference_chunk(2) == INFERENCE_CHUNK
    assert inference_chunk(100_000) == 8
    assert inference_chunk(10**9) == 1
    seen = []

    def fn(z):
        seen.append(z.shape[0])
        return z.sum(-1)

    Z = np.random.default_rng(0).normal(size=(20, 50_000))
    out = evaluate_in_chunks(fn, Z, device=torch.device("cpu"), dtype=torch.float64)
    assert set(seen) == {inference_chunk(50_000)} == {16}
    np.testing.assert_allclose(out, Z.sum(-1))
    one = evaluate_in_chunks(fn, Z[:1], device=torch.device("cpu"), dtype=torch.float64)
    assert one[0] == out[0]  # the same chunk shape, the same value


def test_a_huge_full_covariance_is_refused_before_it_is_allocated():
    Z = np.random.default_rng(0).normal(size=(3, 20_000))
    with pytest.raises(ValueError, match=r"3\.0 GiB.*base='standard'.*'diag'"):
        fit_base("gaussian", Z)
    with pytest.raises(ValueError, match="base='standard'"):
        small_estimator(base="gmm", early_stopping=False).fit(Z)
