"""Deformable convolution against a direct numpy evaluation, fractional offsets included."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.models.cloud.deform import (DeformConv2d, deform_columns, deform_conv2d,  # noqa: E402
                                          deform_conv2d_gemm)


def _bilinear(img: np.ndarray, y: float, x: float) -> float:
    """img (H, W) at (y, x); each of the four corners outside the image reads zero."""
    H, W = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    total = 0.0
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= yy < H and 0 <= xx < W:
                total += wy * wx * float(img[yy, xx])
    return total


def _reference(x, offset, weight, bias, padding, dilation):
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    Ho, Wo = offset.shape[-2:]
    out = np.zeros((B, O, Ho, Wo))
    for b in range(B):
        for oy in range(Ho):
            for ox in range(Wo):
                cols = np.zeros((C, kh, kw))
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        py = oy + i * dilation - padding + offset[b, 2 * k, oy, ox]
                        px = ox + j * dilation - padding + offset[b, 2 * k + 1, oy, ox]
                        for c in range(C):
                            cols[c, i, j] = _bilinear(x[b, c], py, px)
                out[b, :, oy, ox] = np.tensordot(weight, cols, axes=3) + bias
    return out


@pytest.mark.parametrize("H,W,padding,dilation,scale", [(7, 9, 1, 1, 0.7), (6, 5, 1, 1, 3.0),
                                                       (9, 8, 2, 2, 1.3)])
def test_fractional_offsets_match_bilinear_reference(H, W, padding, dilation, scale):
    g = torch.Generator().manual_seed(H * W)
    x = torch.randn(2, 3, H, W, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    Ho, Wo = H + 2 * padding - 2 * dilation, W + 2 * padding - 2 * dilation
    # fractional everywhere (never integer), large enough to leave the image at times
    off = torch.rand(2, 18, Ho, Wo, generator=g, dtype=torch.float64) * 2 * scale - scale
    off = off + 0.137
    out = deform_conv2d(x, off, w, b, padding=padding, dilation=dilation)
    ref = _reference(x.numpy(), off.numpy(), w.numpy(), b.numpy(), padding, dilation)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)


def test_half_pixel_offset_averages_neighbours():
    # one input channel, kernel with only the centre tap: output = the sample itself
    x = torch.arange(20, dtype=torch.float64).view(1, 1, 4, 5)
    w = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    w[0, 0, 1, 1] = 1.0
    off = torch.zeros(1, 18, 4, 5, dtype=torch.float64)
    off[:, 9] = 0.5                                  # tap 4 (centre), x offset
    out = deform_conv2d(x, off, w)[0, 0]
    expect = (x[0, 0, :, :-1] + x[0, 0, :, 1:]) / 2
    torch.testing.assert_close(out[:, :-1], expect)
    torch.testing.assert_close(out[:, -1], x[0, 0, :, -1] / 2)   # right neighbour is outside


def test_module_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(3)
    m = DeformConv2d(2, 2).double()
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    off = (torch.rand(1, 18, 5, 6, generator=g, dtype=torch.float64) * 1.6 - 0.8 + 0.05)
    off.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, o: m(a, o), (x, off), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gemm_form_matches_the_reference(layout):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 11, 14, generator=g).contiguous(memory_format=layout)
    w = torch.randn(5, 6, 3, 3, generator=g)
    b = torch.randn(5, generator=g)
    off = (torch.rand(3, 18, 11, 14, generator=g) * 4 - 2).contiguous(memory_format=layout)
    ref = deform_conv2d(x, off, w, b)
    torch.testing.assert_close(deform_conv2d_gemm(x, off, w, b), ref, atol=1e-5, rtol=1e-5)
    # the sampled columns are the reference's samples exactly, in (channel, tap) order
    cols = deform_columns(x, off).view(3, 6, 9, 11, 14)
    ones = torch.zeros(1, 6, 3, 3)
    ones[0, 2, 1, 2] = 1.0                        # channel 2, tap (1, 2) = index 5
    torch.testing.assert_close(cols[:, 2, 5], deform_conv2d(x, off, ones)[:, 0], atol=0, rtol=0)
