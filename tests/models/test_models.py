import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.models import FEM, SCIConfig, SCIModel, feature_times  # noqa: E402
from sci_edge.models.cloud import deform_conv2d, warp  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.end.fem import FEMConfig  # noqa: E402

SMALL = SCIConfig(fem=FEMConfig(4, 4, 8, 1), analysis=AnalysisConfig(2, 7, 8, 1))


def test_fem_shapes_and_range():
    fem = FEM()
    x = (torch.rand(3, 13, 17, 23) < 0.3).float()
    f = fem(x)
    assert f.shape == (3, 1, 17, 23)
    assert f.min() >= 0 and f.max() <= 1
    with pytest.raises(ValueError, match="window of 13"):
        fem(x[:, :12])


@pytest.mark.parametrize("hw", [(16, 16), (37, 53), (5, 9)])
def test_sci_recon_any_size(hw):
    model = SCIModel(SMALL)
    spikes = (torch.rand(2, 41, *hw) < 0.3).float()
    out = model(model.windows_at(spikes, 20))
    assert out.shape == (2, 1, *hw)
    out.mean().backward()
    grads = [p.grad for p in model.analysis.parameters() if p.grad is not None]
    assert grads


@pytest.mark.parametrize("hw", [(16, 16), (36, 52), (8, 12)])
def test_unet_fusion_any_size(hw):
    from sci_edge.models.cloud.analysis import UNetFuse

    fuse = UNetFuse(6, blocks=1, levels=2)
    x = torch.randn(2, 6, *hw, requires_grad=True)
    y = fuse(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert all(p.grad is not None for p in fuse.parameters())
    # the coarse levels see far: a change at one pixel reaches 11 px away
    x2 = x.detach().clone()
    x2[..., 0, 0] += 10.0
    far = (min(hw[0] - 1, 11), min(hw[1] - 1, 11))
    assert (fuse(x2) - y).detach()[..., far[0], far[1]].abs().max() > 0
    cfg = SCIConfig(fem=SMALL.fem, analysis=AnalysisConfig(2, 7, 8, 1, encoder_blocks=2,
                                                           fuse_levels=2))
    model = SCIModel(cfg)
    spikes = (torch.rand(1, 41, *hw) < 0.3).float()
    assert model(model.windows_at(spikes, 20)).shape == (1, 1, *hw)
    assert SCIConfig.from_dict(cfg.to_dict()) == cfg


def test_cls_dropout_only_in_training():
    cfg = SCIConfig(task="cls", fem=SMALL.fem, analysis=SMALL.analysis, dropout=0.5)
    assert SCIConfig.from_dict(cfg.to_dict()).dropout == 0.5
    model = SCIModel(cfg)
    x = model.windows_at((torch.rand(2, 41, 28, 28) < 0.3).float(), 20)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    with pytest.raises(ValueError, match="dropout"):
        SCIConfig(dropout=1.0)


def test_sci_cls_logits():
    cfg = SCIConfig(task="cls", fem=SMALL.fem, analysis=SMALL.analysis, num_classes=7)
    model = SCIModel(cfg)
    logits = model.classify(np.random.default_rng(0).random((3, 41, 30, 30)) < 0.3)
    assert logits.shape == (3, 7)
    with pytest.raises(ValueError, match="classifies"):
        model.reconstruct(np.zeros((41, 8, 8), np.uint8), [20], 1.0)


def test_feature_times_are_clipped():
    assert feature_times(20, 41, 2, 7) == [6, 13, 20, 27, 34]
    assert feature_times(0, 41, 2, 7) == [6, 6, 6, 7, 14]
    assert feature_times(40, 41, 2, 7) == [26, 33, 34, 34, 34]
    with pytest.raises(ValueError, match="at least 13"):
        feature_times(3, 12, 2, 7)


def test_reconstruct_numpy_api():
    model = SCIModel(SMALL)
    spikes = (np.random.default_rng(1).random((50, 12, 14)) < 0.3).astype(np.uint8)
    images = model.reconstruct(spikes, [0, 25, 49], gain=0.5)
    assert images.shape == (3, 12, 14) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="outside"):
        model.reconstruct(spikes, [50], 0.5)
    with pytest.raises(ValueError, match="gain"):
        model.reconstruct(spikes, [5], 0.0)


def test_reconstruct_ensemble_is_flip_equivariant():
    torch.manual_seed(3)
    model = SCIModel(SMALL)
    with torch.no_grad():  # break the symmetry of the fresh init (zeroed output layers)
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    spikes = (np.random.default_rng(2).random((41, 12, 17)) < 0.3).astype(np.uint8)
    plain = model.reconstruct(spikes, [20], 0.5)[0]
    ens = model.reconstruct(spikes, [20], 0.5, ensemble=True)[0]
    assert ens.shape == plain.shape and not np.allclose(ens, plain, atol=1e-4)
    # the average over all 8 flips/turns commutes with each of them; one pass does not
    for view in (lambda a: a[..., ::-1], lambda a: a[..., ::-1, :],
                 lambda a: np.swapaxes(a, -1, -2)):
        moved = np.ascontiguousarray(view(spikes))
        np.testing.assert_allclose(model.reconstruct(moved, [20], 0.5, ensemble=True)[0],
                                   view(ens), atol=1e-5)
    moved = np.ascontiguousarray(spikes[..., ::-1])
    assert not np.allclose(model.reconstruct(moved, [20], 0.5)[0], plain[..., ::-1], atol=1e-4)


@pytest.mark.slow
def test_reconstruct_tiled_matches_full_frame():
    from sci_edge.models.pretrained import load_pretrained

    model = load_pretrained("recon")
    rng = np.random.default_rng(4)
    rate = rng.random((1, 70, 90)).repeat(45, 0) * 0.8
    spikes = (rng.random((45, 70, 90)) < rate).astype(np.uint8)
    full = model.reconstruct(spikes, [22], 0.8)
    # odd tile sizes leave ragged last tiles on both axes
    for tile in (32, 41, 64):
        tiled = model.reconstruct(spikes, [22], 0.8, tile=tile)
        np.testing.assert_allclose(tiled, full, atol=1e-3)
    assert np.array_equal(model.reconstruct(spikes, [22], 0.8, tile=100), full)
    np.testing.assert_allclose(model.reconstruct(spikes, [22], 0.8, tile=48.0), full, atol=1e-3)
    for bad in (0, 16, 40.5):
        with pytest.raises(ValueError, match="tile"):
            model.reconstruct(spikes, [22], 0.8, tile=bad)


def test_deform_conv_zero_offset_is_conv():
    x = torch.randn(2, 3, 9, 11)
    w = torch.randn(4, 3, 3, 3)
    b = torch.randn(4)
    out = deform_conv2d(x, torch.zeros(2, 18, 9, 11), w, b)
    torch.testing.assert_close(out, torch.nn.functional.conv2d(x, w, b, padding=1),
                               atol=1e-5, rtol=1e-5)


def test_deform_conv_integer_offset_shifts():
    x = torch.randn(1, 2, 10, 12)
    w = torch.randn(3, 2, 3, 3)
    off = torch.zeros(1, 18, 10, 12)
    off[:, 1::2] = 1.0  # every tap one pixel to the right
    out = deform_conv2d(x, off, w)
    shifted = torch.nn.functional.pad(x[..., 1:], (0, 1))
    ref = torch.nn.functional.conv2d(shifted, w, padding=1)
    # away from the borders, where zero padding differs from the shifted input
    torch.testing.assert_close(out[..., 1:-2], ref[..., 1:-2], atol=1e-5, rtol=1e-5)


def test_deform_conv_offset_gradient():
    x = torch.randn(1, 2, 8, 8)
    off = (torch.rand(1, 18, 8, 8) * 0.5).requires_grad_()
    deform_conv2d(x, off, torch.randn(2, 2, 3, 3)).sum().backward()
    assert off.grad.abs().sum() > 0


def test_warp_identity_and_shift():
    x = torch.randn(1, 1, 6, 8)
    torch.testing.assert_close(warp(x, torch.zeros(1, 2, 6, 8)), x)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 1.0
    torch.testing.assert_close(warp(x, flow)[..., :-1], x[..., 1:])


def test_fem_feature_stream():
    from sci_edge.models import fem_features

    fem = FEM()
    spikes = (np.random.default_rng(2).random((40, 9, 11)) < 0.3).astype(np.uint8)
    times, feats = fem_features(fem, spikes, stride=5)
    np.testing.assert_array_equal(times, [6, 11, 16, 21, 26, 31])
    assert feats.shape == (6, 9, 11)
    with torch.no_grad():
        one = fem(torch.from_numpy(spikes[10:23]).float()[None])[0, 0].numpy()
    np.testing.assert_allclose(feats[2], one, atol=1e-6)
    with pytest.raises(ValueError, match="stride"):
        fem_features(fem, spikes, stride=0)


def test_analyse_takes_external_flows_at_any_size():
    torch.manual_seed(5)
    model = SCIModel(SMALL).eval()
    with torch.no_grad():  # the fresh head's zeroed output layer would hide the flows
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    feats = torch.rand(2, 5, 10, 13)
    zero = torch.zeros(2, 4, 2, 10, 13)
    out = model.analyse(feats, zero)
    assert out.shape == (2, 1, 10, 13)
    assert not torch.equal(out, model.analyse(feats, zero + 3.0))
