"""Quantizers: straight-through gradients, nearest codes, what each loss moves, EMA, restarts,
k-means initialisation, eval-mode purity, lookup, autocast, state_dict."""

import copy

import pytest
import torch

from speechvq.errors import SpeechVQError
from speechvq.quantization.vq import EMAVectorQuantizer, VectorQuantizer, nearest_codes

QUANTIZERS = [VectorQuantizer, EMAVectorQuantizer]


def _brute_force_distances(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, D), (K, D) -> (N, K) squared L2 distances, computed directly in float64."""
    return (vectors.double()[:, None, :] - codebook.double()[None, :, :]).pow(2).sum(-1)


def _flat(z_e: torch.Tensor) -> torch.Tensor:
    return z_e.detach().transpose(1, 2).reshape(-1, z_e.shape[1])


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_straight_through_gradient_equals_upstream_gradient(cls):
    torch.manual_seed(0)
    quantizer = cls(num_codes=16, dim=8).train()
    z_e = torch.randn(3, 8, 10, requires_grad=True)
    upstream = torch.randn(3, 8, 10)
    result = quantizer(z_e)
    (result.quantized * upstream).sum().backward()
    assert torch.equal(z_e.grad, upstream)
    assert not torch.equal(result.quantized.detach(), z_e.detach())  # it did quantize


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_lookup_equals_quantized_forward_value(cls):
    torch.manual_seed(1)
    quantizer = cls(num_codes=32, dim=4).eval()
    z_e = torch.randn(2, 4, 25)
    result = quantizer(z_e)
    assert result.codes.shape == (2, 25) and result.codes.dtype == torch.int64
    assert result.quantized.shape == (2, 4, 25)
    assert torch.equal(quantizer.lookup(result.codes), result.quantized)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_codes_are_the_nearest_codebook_vectors(cls):
    torch.manual_seed(2)
    quantizer = cls(num_codes=64, dim=6).eval()
    z_e = torch.randn(4, 6, 30) * 0.5
    codes = quantizer(z_e).codes.reshape(-1)
    distances = _brute_force_distances(_flat(z_e), quantizer.codebook)
    chosen = distances.gather(1, codes[:, None]).squeeze(1)
    assert torch.all(chosen <= distances.min(dim=1).values + 1e-5)
    assert torch.equal(nearest_codes(_flat(z_e), quantizer.codebook), codes)


def test_nearest_codes_in_chunks_equal_one_pass(monkeypatch):
    torch.manual_seed(3)
    vectors, codebook = torch.randn(1000, 5), torch.randn(40, 5)
    whole = nearest_codes(vectors, codebook)
    monkeypatch.setattr("speechvq.quantization.vq.DISTANCE_CHUNK_ROWS", 128)
    assert torch.equal(nearest_codes(vectors, codebook), whole)
    assert torch.equal(whole, _brute_force_distances(vectors, codebook).argmin(dim=1))


def test_commitment_moves_only_the_encoder_output_and_codebook_loss_only_the_codebook():
    torch.manual_seed(4)
    quantizer = VectorQuantizer(num_codes=8, dim=3, beta=0.25).train()
    z_e = torch.randn(2, 3, 5, requires_grad=True)
    result = quantizer(z_e)
    z_q = quantizer.lookup(result.codes)

    result.commitment_loss.backward(retain_graph=True)
    assert quantizer.codebook.grad is None or not quantizer.codebook.grad.any()
    torch.testing.assert_close(z_e.grad, 2 * (z_e.detach() - z_q) / z_e.numel())

    z_e.grad = None
    quantizer.codebook.grad = None
    result.codebook_loss.backward(retain_graph=True)
    assert z_e.grad is None or not z_e.grad.any()
    expected = torch.zeros_like(quantizer.codebook)
    expected.index_add_(0, result.codes.reshape(-1), 2 * (_flat(z_q) - _flat(z_e)) / z_e.numel())
    torch.testing.assert_close(quantizer.codebook.grad, expected)

    quantizer.codebook.grad = None
    z_e.grad = None
    result.loss.backward()
    torch.testing.assert_close(result.loss, result.codebook_loss + 0.25 * result.commitment_loss)
    torch.testing.assert_close(z_e.grad, 0.25 * 2 * (z_e.detach() - z_q) / z_e.numel())


def test_ema_quantizer_loss_is_beta_commitment_and_codebook_has_no_gradient():
    torch.manual_seed(5)
    quantizer = EMAVectorQuantizer(num_codes=8, dim=3, beta=0.25).train()
    assert list(quantizer.parameters()) == []
    z_e = torch.randn(2, 3, 5, requires_grad=True)
    result = quantizer(z_e)
    assert float(result.codebook_loss) == 0.0
    torch.testing.assert_close(result.loss, 0.25 * result.commitment_loss)
    result.loss.backward()
    z_q = result.quantized.detach()  # the codebook before this step's EMA update
    torch.testing.assert_close(z_e.grad, 0.25 * 2 * (z_e.detach() - z_q) / z_e.numel())


def _used_codes_and_means(quantizer, z_e):
    with torch.no_grad():
        codes = quantizer.eval()(z_e).codes.reshape(-1)
    vectors = _flat(z_e)
    used = codes.unique()
    means = torch.stack([vectors[codes == k].mean(0) for k in used])
    return used, means


def test_ema_moves_each_used_code_towards_the_mean_of_its_vectors():
    torch.manual_seed(6)
    quantizer = EMAVectorQuantizer(num_codes=16, dim=4, decay=0.9, restart_after_steps=0)
    z_e = torch.randn(4, 4, 50) * 2 + 1
    used, means = _used_codes_and_means(quantizer, z_e)
    before = (quantizer.codebook[used] - means).norm(dim=1)
    quantizer.train()(z_e)
    after = (quantizer.codebook[used] - means).norm(dim=1)
    assert torch.all(after < before)


def test_ema_with_zero_decay_lands_on_the_mean():
    torch.manual_seed(7)
    quantizer = EMAVectorQuantizer(num_codes=16, dim=4, decay=0.0, eps=1e-8, restart_after_steps=0)
    z_e = torch.randn(4, 4, 50) * 2 + 1
    used, means = _used_codes_and_means(quantizer, z_e)
    quantizer.train()(z_e)
    torch.testing.assert_close(quantizer.codebook[used], means, rtol=1e-4, atol=1e-4)
    assert quantizer.ema_count.sum() == pytest.approx(4 * 50)


def _make_dead(quantizer, code: int, value: float = 1000.0) -> None:
    state = quantizer.state_dict()
    state["codebook"][code] = value
    if "ema_sum" in state:
        state["ema_sum"][code] = value * state["ema_count"][code]
    quantizer.load_state_dict(state)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_dead_code_is_restarted_onto_a_recent_input_after_restart_after_steps(cls):
    torch.manual_seed(8)
    quantizer = cls(num_codes=8, dim=4, restart_after_steps=3).train()
    _make_dead(quantizer, 0)
    for step in range(1, 4):
        z_e = torch.randn(2, 4, 16, requires_grad=True)
        result = quantizer(z_e)
        (result.quantized.sum() + result.loss).backward()  # restarting must not break backward
        if step < 3:
            assert quantizer.codebook[0].abs().min() > 100, f"restarted too early (step {step})"
            assert int(quantizer.unused_steps[0]) == step
    distance_to_inputs = (_flat(z_e) - quantizer.codebook[0].detach()).norm(dim=1)
    assert float(distance_to_inputs.min()) == 0.0
    assert int(quantizer.unused_steps[0]) == 0
    assert int(quantizer.restart_count) >= 1


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_no_restart_when_disabled(cls):
    torch.manual_seed(9)
    quantizer = cls(num_codes=8, dim=4, restart_after_steps=0).train()
    _make_dead(quantizer, 0)
    for _ in range(5):
        quantizer(torch.randn(2, 4, 16))
    assert quantizer.codebook[0].abs().min() > 100
    assert int(quantizer.unused_steps[0]) == 5
    assert int(quantizer.restart_count) == 0


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_kmeans_init_places_codes_on_the_data(cls):
    torch.manual_seed(10)
    quantizer = cls(num_codes=16, dim=3, kmeans_init=True, restart_after_steps=0).train()
    assert not bool(quantizer.initialized)
    centres = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [-5.0, -5.0, -5.0]])
    points = centres.repeat_interleave(20, dim=0) + 0.01 * torch.randn(80, 3)
    z_e = points.t().reshape(1, 3, 80)
    quantizer(z_e)
    assert bool(quantizer.initialized)
    distance_to_centres = torch.cdist(quantizer.codebook.detach(), centres).min(dim=1).values
    assert torch.all(distance_to_centres < 0.1)


def test_kmeans_init_with_as_many_distinct_points_as_codes_puts_one_code_on_each():
    torch.manual_seed(11)
    quantizer = VectorQuantizer(num_codes=12, dim=2, kmeans_init=True).train()
    points = torch.randn(12, 2) * 3
    result = quantizer(points.t().reshape(1, 2, 12))
    codebook = quantizer.codebook.detach()
    assert float(torch.cdist(points, codebook).min(dim=1).values.max()) < 1e-5
    assert float(torch.cdist(codebook, points).min(dim=1).values.max()) < 1e-5
    assert int(result.used_codes) == 12


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_eval_mode_changes_no_buffer(cls):
    torch.manual_seed(12)
    quantizer = cls(num_codes=8, dim=4, kmeans_init=True, restart_after_steps=1).eval()
    before = copy.deepcopy(quantizer.state_dict())
    for _ in range(3):
        quantizer(torch.randn(2, 4, 16))
    after = quantizer.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    quantizer.train()(torch.randn(2, 4, 16))  # training does change state (the check above can fail)
    assert not all(torch.equal(before[name], quantizer.state_dict()[name]) for name in before)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_state_dict_round_trip_keeps_all_state(cls):
    torch.manual_seed(13)
    trained = cls(num_codes=8, dim=4, kmeans_init=True, restart_after_steps=2).train()
    for _ in range(4):
        trained(torch.randn(2, 4, 16))
    fresh = cls(num_codes=8, dim=4, kmeans_init=True, restart_after_steps=2)
    fresh.load_state_dict(trained.state_dict())
    assert bool(fresh.initialized)
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    z_e = torch.randn(2, 4, 16)
    torch.manual_seed(14)
    a = trained.train()(z_e)
    torch.manual_seed(14)
    b = fresh.train()(z_e)
    assert torch.equal(a.codes, b.codes)
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_autocast_bfloat16_keeps_distances_and_statistics_in_float32(cls):
    torch.manual_seed(15)
    reference = cls(num_codes=128, dim=16, restart_after_steps=0).train()
    autocast = copy.deepcopy(reference)
    z_e = torch.randn(4, 16, 100)
    expected = reference(z_e)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = autocast(z_e)
    assert torch.equal(result.codes, expected.codes)
    assert result.loss.dtype == torch.float32 and result.quantized.dtype == torch.float32
    for name, value in reference.state_dict().items():
        assert value.dtype == autocast.state_dict()[name].dtype
        assert torch.equal(autocast.state_dict()[name], value), name
    # The check has teeth: bfloat16 distances would pick other codes for some vectors.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = nearest_codes(_flat(z_e), reference.codebook.detach())
    assert not torch.equal(low_precision, expected.codes)


def test_bfloat16_encoder_output_is_quantized_like_its_float32_value():
    torch.manual_seed(16)
    quantizer = EMAVectorQuantizer(num_codes=64, dim=8).eval()
    z_e = torch.randn(2, 8, 40).bfloat16()
    result = quantizer(z_e)
    assert torch.equal(result.codes, quantizer(z_e.float()).codes)
    assert result.quantized.dtype == torch.float32


def test_perplexity_and_used_codes():
    torch.manual_seed(17)
    quantizer = VectorQuantizer(num_codes=10, dim=2).eval()
    codebook = quantizer.codebook.detach()
    uniform = codebook.t().reshape(1, 2, 10)  # every code once
    result = quantizer(uniform)
    assert float(result.perplexity) == pytest.approx(10.0)
    assert int(result.used_codes) == 10
    single = codebook[3].reshape(1, 2, 1).expand(1, 2, 7)
    result = quantizer(single)
    assert float(result.perplexity) == pytest.approx(1.0)
    assert int(result.used_codes) == 1


def test_usage_buffers_count_training_assignments():
    torch.manual_seed(18)
    quantizer = VectorQuantizer(num_codes=10, dim=2, restart_after_steps=0).train()
    z_e = quantizer.codebook.detach()[:4].t().reshape(1, 2, 4).clone()
    for _ in range(3):
        quantizer(z_e)
    assert quantizer.code_usage.tolist() == [3, 3, 3, 3, 0, 0, 0, 0, 0, 0]
    assert quantizer.unused_steps.tolist() == [0, 0, 0, 0, 3, 3, 3, 3, 3, 3]


@pytest.mark.parametrize(
    "kwargs", [{"num_codes": 1}, {"dim": 0}, {"beta": -1.0}, {"restart_after_steps": -2}, {"kmeans_iters": -1}]
)
def test_bad_arguments_are_refused_by_name(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(SpeechVQError, match=name):
        VectorQuantizer(**kwargs)


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"eps": 0.0}])
def test_bad_ema_arguments_are_refused_by_name(kwargs):
    with pytest.raises(SpeechVQError, match=next(iter(kwargs))):
        EMAVectorQuantizer(**kwargs)


def test_lookup_refuses_out_of_range_codes():
    quantizer = EMAVectorQuantizer(num_codes=8, dim=2)
    with pytest.raises(SpeechVQError, match=r"\[0, 8\)"):
        quantizer.lookup(torch.tensor([[0, 8]]))


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 4, T\)"):
        VectorQuantizer(num_codes=8, dim=4)(torch.randn(2, 3, 5))


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_encode_gives_the_forward_codes_and_touches_no_state_in_training_mode(cls):
    torch.manual_seed(19)
    quantizer = cls(num_codes=8, dim=3, kmeans_init=True, restart_after_steps=1).train()
    z_e = torch.randn(2, 3, 5)
    before = copy.deepcopy(quantizer.state_dict())
    codes = quantizer.encode(z_e)
    assert quantizer.training  # no train/eval toggling
    assert all(torch.equal(before[name], value) for name, value in quantizer.state_dict().items())
    assert torch.equal(codes, quantizer.eval()(z_e).codes)
    with pytest.raises(ValueError, match="z_e of shape"):
        quantizer.encode(torch.randn(2, 4, 5))


def test_codebook_usage_figures():
    from speechvq.quantization.usage import code_counts, codebook_usage, usage_of_codes

    usage = codebook_usage(torch.tensor([5, 5, 0, 0]))
    assert usage.as_dict() == {"perplexity": pytest.approx(2.0), "used_codes": 2, "dead_codes": 2}
    assert usage.entropy_bits == pytest.approx(1.0)
    assert codebook_usage([0, 0, 0]).as_dict() == {"perplexity": 1.0, "used_codes": 0, "dead_codes": 3}
    assert code_counts(torch.tensor([[1, 1], [3, 0]]), 4).tolist() == [1, 2, 0, 1]
    assert usage_of_codes([2, 2, 2], 3).as_dict() == {"perplexity": 1.0, "used_codes": 1, "dead_codes": 2}
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        code_counts([4], 4)
    float_counts = codebook_usage(torch.tensor([1.0, 1.0, 2.0]))  # the quantizer's float32 counts stay float32
    assert float_counts.perplexity.dtype == torch.float32
