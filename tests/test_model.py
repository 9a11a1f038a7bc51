"""The MLP's layers without autograd (stacks of models): each forward/backward pair against
autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from study.train.model import (
    Dropout,
    cross_entropy_backward,
    cross_entropy_forward,
    linear_backward,
    linear_forward,
    relu_dropout_backward,
    relu_dropout_forward,
)


def test_the_linear_pair_gives_autograds_output_and_gradients():
    torch.manual_seed(0)
    inp, weight, bias = torch.randn(3, 16, 20), torch.randn(3, 5, 20), torch.randn(3, 5)
    scale, factor = 1.25, 1 / 16
    leaves = [t.clone().requires_grad_() for t in (inp, weight, bias)]
    expected = scale * leaves[0] @ leaves[1].transpose(1, 2) + leaves[2][:, None, :]
    dout = torch.randn(3, 16, 5)
    (expected * (factor * dout)).sum().backward()  # the true gradient: factor * dout

    out = linear_forward(inp, weight, bias, scale=scale)
    dweight, dbias = torch.empty_like(weight), torch.empty_like(bias)
    dinp = linear_backward(dout, inp, weight, scale=scale, factor=factor,
                           dweight=dweight, dbias=dbias)
    torch.testing.assert_close(out, expected.detach())
    torch.testing.assert_close(dweight, leaves[1].grad)
    torch.testing.assert_close(dbias, leaves[2].grad)
    torch.testing.assert_close(factor * scale * dinp, leaves[0].grad)
    assert linear_backward(dout, inp, weight, scale=scale, factor=factor, dweight=dweight,
                           dbias=dbias, input_grad=False) is None
    # one input shared by every member (the evaluation set)
    torch.testing.assert_close(linear_forward(inp[0], weight, bias),
                               inp[0] @ weight.transpose(1, 2) + bias[:, None, :])


@pytest.mark.parametrize("p", [0.2, 0.0])
def test_the_relu_dropout_pair_gives_autograds_output_and_gradient(p):
    drop = Dropout(p)
    torch.manual_seed(0)
    pre = torch.randn(1, 64, 32)  # a stack of one model
    leaf = pre.clone().requires_grad_()
    torch.manual_seed(4)
    expected = drop(F.relu(leaf))
    dy = torch.randn_like(expected)
    expected.backward(dy)

    torch.manual_seed(4)  # the same mask
    out, scale = relu_dropout_forward(pre.clone(), p, [None])  # torch's global generator
    torch.testing.assert_close(scale * out, expected.detach())
    # the gradient of the unscaled out is scale times that of the layer's output
    torch.testing.assert_close(relu_dropout_backward(scale * dy, out), leaf.grad)
    assert (scale == 1.0) == (p == 0)


def test_the_cross_entropy_pair_gives_autograds_losses_and_gradient():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    leaf = logits.clone().requires_grad_()
    per_example = F.cross_entropy(leaf, y, reduction="none")
    per_example.mean().backward()

    nll, pred, log_p = cross_entropy_forward(logits, y)
    torch.testing.assert_close(nll, per_example.detach())
    assert torch.equal(pred, logits.argmax(dim=1))
    torch.testing.assert_close(cross_entropy_backward(log_p, y) / 16, leaf.grad)


def test_the_relu_dropout_layer_needs_one_generator_per_member():
    pre = torch.randn(2, 8, 32)
    with pytest.raises(ValueError, match="one generator per member: got 1 for a stack of 2"):
        relu_dropout_forward(pre, 0.2, [None])
    with pytest.raises(ValueError, match="got 3 for a stack of 2"):
        relu_dropout_forward(pre, 0.2, [torch.Generator() for _ in range(3)])
