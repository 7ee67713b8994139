"""`attention.qkv_order`: the two ways guided-diffusion reads a fused qkv projection.

Each order of archsearch's AttentionBlock equals a hand-written reference of guided-diffusion's
class for it (QKVAttention for "new", QKVAttentionLegacy for "legacy"), on random weights; the
two differ as soon as there is more than one head, which is why a checkpoint of one order loads
wrongly into the other.
"""

import math

import pytest
import torch
from torch import nn

from archsearch.nn.layers import AttentionBlock
from archsearch.schema import UNetConfig


def reference(block: AttentionBlock, x: torch.Tensor, heads: int, order: str) -> torch.Tensor:
    """guided-diffusion's AttentionBlock._forward with the block's weights, written out."""
    B, C, H, W = x.shape
    qkv = torch.einsum("oc,bct->bot", block.qkv.weight[:, :, 0, 0], block.norm(x).reshape(B, C, -1))
    qkv = qkv + block.qkv.bias[None, :, None]  # (B, 3C, T)
    ch = C // heads
    if order == "legacy":  # QKVAttentionLegacy: split heads first, each [q k v]
        q, k, v = qkv.reshape(B * heads, 3 * ch, H * W).split(ch, dim=1)
    else:  # QKVAttention: chunk into q, k, v, then split each into heads
        q, k, v = (part.reshape(B * heads, ch, H * W) for part in qkv.chunk(3, dim=1))
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(B, C, H * W)
    h = torch.einsum("oc,bct->bot", block.proj.weight[:, :, 0, 0], a) + block.proj.bias[None, :, None]
    return x + h.reshape(B, C, H, W)


def attention(heads: int, order: str | None) -> AttentionBlock:
    torch.manual_seed(0)
    kwargs = {} if order is None else {"qkv_order": order}
    block = AttentionBlock(32, heads, norm=lambda c: nn.GroupNorm(8, c), zero_init=False, **kwargs)
    with torch.no_grad():  # a norm that is not the identity map, so the reference must apply it
        block.norm.weight.normal_(1, 0.2)
        block.norm.bias.normal_(0, 0.2)
    return block.eval()


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("order", ["new", "legacy"])
def test_each_order_equals_guided_diffusion(order, heads):
    block = attention(heads, order)
    x = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        assert (block(x) - reference(block, x, heads, order)).abs().max() < 1e-5


def test_the_default_is_the_new_order():
    assert UNetConfig().attention.qkv_order == "new"
    block, x = attention(4, None), torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        assert (block(x) - reference(block, x, 4, "new")).abs().max() < 1e-5


@pytest.mark.parametrize("heads,differ", [(1, False), (2, True), (4, True)])
def test_the_orders_differ_with_more_than_one_head(heads, differ):
    x = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        gap = (attention(heads, "new")(x) - attention(heads, "legacy")(x)).abs().max()
    assert (gap > 1e-3) == differ, gap
