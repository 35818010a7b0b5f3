"""WaveNet stack: causality, and cached step-by-step evaluation equal to the teacher-forced pass."""

import numpy as np
import pytest
import torch

from speechvq.modules.wavenet import WaveNet
from speechvq.modules.wavenet_stepper import NumpyStepper, TorchStepper
from wavenet_testutils import HOP


def _net(global_channels=5, layers=6, stacks=2, seed=0):
    torch.manual_seed(seed)
    net = WaveNet(residual_channels=8, gate_channels=12, skip_channels=10, out_channels=7, layers=layers,
                  stacks=stacks, local_channels=6, global_channels=global_channels).eval()
    with torch.no_grad():  # non-zero biases so that their folding into the stepper is exercised
        net.skip_bias.normal_()
    return net


def _inputs(batch, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = -(-length // HOP)
    return (torch.randn(batch, 8, length, generator=g), torch.randn(batch, 6, frames, generator=g),
            torch.randn(batch, 5, generator=g))


def _converters(stepper_cls):
    """(to the stepper's array type, back to a tensor copy) for a stepper class."""
    if stepper_cls is NumpyStepper:
        return (lambda t: None if t is None else t.numpy()), (lambda a: torch.from_numpy(a.copy()))
    return (lambda t: t), (lambda t: t.clone())


def _run_stepper(stepper_cls, net, x, local, global_, select_at=None, rows=None):
    """Teacher-forced stepping; optionally keep only `rows` from step `select_at` (a frame start) on."""
    as_np = stepper_cls is NumpyStepper
    conv, back = _converters(stepper_cls)
    stepper = stepper_cls(net, x.shape[0])
    stepper.set_global(conv(global_))
    outputs = []
    for t in range(x.shape[-1]):
        if t == select_at:
            stepper.select(np.asarray(rows) if as_np else torch.tensor(rows))
            x, local = x[rows], local[rows]
            outputs = [o[rows] for o in outputs]
        if t % HOP == 0:
            stepper.set_local(conv(local[:, :, t // HOP]))
        outputs.append(back(stepper.step(conv(x[:, :, t]))))
    return torch.stack(outputs, dim=-1)


def test_dilations_and_receptive_field():
    net = _net(layers=6, stacks=2)
    assert net.dilations == [1, 2, 4, 1, 2, 4]
    assert net.receptive_field == 15


@pytest.mark.parametrize("bad", [dict(layers=5, stacks=2), dict(gate_channels=7)])
def test_constructor_rejects_bad_shapes(bad):
    kwargs = dict(residual_channels=4, gate_channels=8, skip_channels=4, out_channels=3, layers=4, stacks=2,
                  local_channels=2) | bad
    with pytest.raises(ValueError):
        WaveNet(**kwargs)


def test_forward_is_causal():
    net = _net()
    x, local, global_ = _inputs(2, 30)
    with torch.no_grad():
        base = net(x, local, global_, HOP)
        t = 13
        x2 = x.clone()
        x2[:, :, t] += 1.0
        moved = net(x2, local, global_, HOP)
    assert torch.equal(base[..., :t], moved[..., :t])
    assert (base[..., t] - moved[..., t]).abs().max() > 1e-4


def test_local_conditioning_is_frame_rate():
    """Changing frame f changes exactly the outputs of samples f*hop .. (f+1)*hop-1 and later ones."""
    net = _net()
    x, local, global_ = _inputs(1, 24)
    with torch.no_grad():
        base = net(x, local, global_, HOP)
        local2 = local.clone()
        local2[:, :, 2] += 1.0
        moved = net(x, local2, global_, HOP)
    assert torch.equal(base[..., :2 * HOP], moved[..., :2 * HOP])
    assert (base[..., 2 * HOP] - moved[..., 2 * HOP]).abs().max() > 1e-4


@pytest.mark.parametrize("stepper_cls", [NumpyStepper, TorchStepper])
@pytest.mark.parametrize("batch,length", [(1, 16), (3, 23), (2, 37)])
def test_cached_steps_equal_forward(stepper_cls, batch, length):
    net = _net()
    x, local, global_ = _inputs(batch, length)
    with torch.no_grad():
        expected = net(x, local, global_, HOP)
        got = _run_stepper(stepper_cls, net, x, local, global_)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stepper_cls", [NumpyStepper, TorchStepper])
def test_cached_steps_without_global_conditioning(stepper_cls):
    net = _net(global_channels=0, layers=4, stacks=1)
    x, local, _ = _inputs(2, 21)
    with torch.no_grad():
        expected = net(x, local, None, HOP)
        got = _run_stepper(stepper_cls, net, x, local, None)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stepper_cls", [NumpyStepper, TorchStepper])
def test_select_keeps_the_state_of_kept_rows(stepper_cls):
    net = _net()
    x, local, global_ = _inputs(3, 28)
    rows = [2, 0]
    with torch.no_grad():
        expected = net(x, local, global_, HOP)[rows]
        got = _run_stepper(stepper_cls, net, x, local, global_, select_at=3 * HOP, rows=rows)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stepper_cls", [NumpyStepper, TorchStepper])
def test_reset_forgets_the_past(stepper_cls):
    net = _net()
    x, local, global_ = _inputs(1, 9)
    with torch.no_grad():
        first = _run_stepper(stepper_cls, net, x, local, global_)
        stepper = stepper_cls(net, 1)
        conv, back = _converters(stepper_cls)
        stepper.set_global(conv(global_))
        stepper.set_local(conv(local[:, :, 0]))
        for _ in range(5):
            stepper.step(conv(torch.randn(1, 8)))
        stepper.reset()
        stepper.set_local(conv(local[:, :, 0]))
        again = back(stepper.step(conv(x[:, :, 0])))
    torch.testing.assert_close(again, first[..., 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("limit", [0, 2])
def test_numpy_stepper_without_conditioning_in_the_taps(monkeypatch, limit):
    """Large batches add the conditioning separately; selecting rows may switch between the two layouts."""
    monkeypatch.setattr(NumpyStepper, "AUGMENT_MAX_BATCH", limit)
    net = _net()
    x, local, global_ = _inputs(3, 18)
    rows = [1, 2]
    with torch.no_grad():
        expected = net(x, local, global_, HOP)
        got = _run_stepper(NumpyStepper, net, x, local, global_)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        got = _run_stepper(NumpyStepper, net, x, local, global_, select_at=2 * HOP, rows=rows)
    torch.testing.assert_close(got, expected[rows], atol=1e-4, rtol=0)


def _ops_per_step(stepper, x0):
    """aten operators (CPU stand-ins for kernel launches) that one `step` runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Count() as count:
        stepper.step(x0)
    return count.ops


@pytest.mark.parametrize("layers", [6, 20])
def test_torch_stepper_runs_one_product_per_layer(layers):
    """[x[t - d], x[t]] times the stacked taps: 4 operators per layer (gate product, tanh, glu,
    residual product) plus a constant number per step, instead of 7 per layer."""
    net = _net(layers=layers)
    x, local, global_ = _inputs(3, 8)
    with torch.no_grad():
        stepper = TorchStepper(net, 3)
        stepper.set_global(global_)
        stepper.set_local(local[:, :, 0])
        ops = _ops_per_step(stepper, x[:, :, 0])
    views = {"view", "slice", "select", "unsqueeze", "t", "expand", "alias", "as_strided"}
    work = [op for op in ops if op.split(".")[0] not in views]
    assert sum(op.startswith("addmm") for op in work) == 2 * layers - 1 + 3
    assert len(work) <= 4 * layers + 12, work


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_stepper_on_cuda_equals_forward():
    net = _net().cuda()
    x, local, global_ = (t.cuda() for t in _inputs(3, 23))
    with torch.no_grad():
        expected = net(x, local, global_, HOP)
        got = _run_stepper(TorchStepper, net, x, local, global_, select_at=2 * HOP, rows=[2, 0])
    torch.testing.assert_close(got, expected[[2, 0]], atol=1e-4, rtol=0)
