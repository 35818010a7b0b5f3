"""Encoder: exact output length ceil(n / 64), shapes, frame alignment; residual blocks."""

import math
import random

import pytest
import torch

from speechvq.errors import SpeechVQError
from speechvq.models.encoder import Encoder
from speechvq.modules.conv import ResBlock1d, ResStack1d


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(channels=8, dim=4, num_res_blocks=1, res_channels=4).eval()


def test_output_length_is_ceil_n_over_64_for_random_lengths(encoder):
    rng = random.Random(0)
    lengths = [64, 65, 127, 128, 20000] + [rng.randint(64, 20000) for _ in range(60)]
    with torch.no_grad():
        for n in lengths:
            z_e = encoder(torch.randn(1, n))
            assert z_e.shape[-1] == math.ceil(n / 64) == encoder.output_length(n), n


def test_short_inputs_give_one_frame(encoder):
    with torch.no_grad():
        for n in (1, 2, 33, 63, 64):
            assert encoder(torch.randn(1, n)).shape == (1, 4, 1)
            assert encoder.output_length(n) == 1


def test_shapes_and_dtype():
    torch.manual_seed(0)
    encoder = Encoder(channels=6, dim=5, num_downsamples=6, num_res_blocks=2, res_channels=3)
    assert encoder.hop_length == 64
    z_e = encoder(torch.randn(3, 1000))
    assert z_e.shape == (3, 5, 16)
    assert z_e.dtype == torch.float32
    assert torch.isfinite(z_e).all()


def test_frames_are_aligned_to_the_start_of_the_signal(encoder):
    """Padding goes at the end: a prefix's frames equal the longer signal's frames, except near the cut."""
    torch.manual_seed(1)
    wav = torch.randn(1, 64 * 40)
    with torch.no_grad():
        full = encoder(wav)
        for n in (64 * 20 + 17, 64 * 25):
            prefix = encoder(wav[:, :n])
            frames = prefix.shape[-1] - 3  # frames whose receptive field ends before the cut
            torch.testing.assert_close(prefix[..., :frames], full[..., :frames], rtol=1e-5, atol=1e-6)


def test_batch_items_are_independent(encoder):
    torch.manual_seed(2)
    wav = torch.randn(2, 700)
    with torch.no_grad():
        both = encoder(wav)
        torch.testing.assert_close(both[1:], encoder(wav[1:]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"channels": 0}, {"dim": 0}, {"num_downsamples": 0}, {"num_res_blocks": -1}, {"res_channels": 0}]
)
def test_bad_arguments_are_refused_by_name(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(SpeechVQError, match=name):
        Encoder(**kwargs)


def test_wrong_input_shape_is_refused(encoder):
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        encoder(torch.randn(2, 1, 100))


def test_residual_block_with_zero_init_scale_is_identity_and_keeps_shape():
    block = ResBlock1d(5, 3, init_scale=0.0)
    x = torch.randn(2, 5, 11)
    assert torch.equal(block(x), x)
    assert ResBlock1d(5, 3)(x).shape == x.shape


def test_residual_stack_scales_each_block_by_inverse_sqrt_depth():
    torch.manual_seed(0)
    reference = ResBlock1d(16, 16).proj.weight.detach().std()
    torch.manual_seed(0)
    stack = ResStack1d(16, 16, num_blocks=4)
    ratio = float(stack.blocks[0].proj.weight.detach().std() / reference)
    assert ratio == pytest.approx(0.5, rel=1e-4)
    assert (stack(torch.randn(1, 16, 7)) >= 0).all()
