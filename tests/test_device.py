"""The ``device`` parameter is checked before torch sees it, with what this machine has."""

import re

import pytest
import torch

from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn._device import check_device, describe_machine

FAST = dict(max_epochs=2, hidden_dims=(8,), latent_dim=4, random_state=0)
CHOICES = "'cpu', 'cuda', 'cuda:N' (N the index of a CUDA device)" + (
    ", 'mps'" if torch.backends.mps.is_built() else "")


@pytest.mark.parametrize("device", ["gpu", "tpu", "cuda:x", "meta", "xla"])
def test_unknown_device_names_the_choices_and_the_machine(tiny_data, device):
    X, Y = tiny_data
    message = (f"device={device!r} is not a device this estimator can use; valid choices: "
               f"{CHOICES}. This machine: {describe_machine()}.")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        C3TLRegressor(**FAST, device=device).fit(X, Y)


def test_gpu_message_in_full():
    if torch.cuda.is_available() or torch.backends.mps.is_built():
        pytest.skip("the exact text below is that of a CPU-only machine")
    with pytest.raises(ValueError) as info:
        check_device("gpu")
    assert str(info.value) == (
        "device='gpu' is not a device this estimator can use; valid choices: 'cpu', 'cuda', "
        "'cuda:N' (N the index of a CUDA device). This machine: torch sees no CUDA device."
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_missing_cuda_is_refused_before_fit(tiny_data, device):
    X, Y = tiny_data
    message = (f"device={device!r} was requested but torch sees no CUDA device; "
               "use device='cpu'.")
    model = C3TLRegressor(**FAST, device=device)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        model.fit(X, Y)
    assert not hasattr(model, "net_")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_index_beyond_the_machine():
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=re.escape(f"device='cuda:{n}' was requested but")):
        check_device(f"cuda:{n}")


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_cpu_is_accepted_and_kept_unchanged(tiny_data, device):
    X, Y = tiny_data
    model = C3TLRegressor(**FAST, device=device).fit(X, Y)
    assert model.device is device
    assert check_device(device) == torch.device("cpu")
