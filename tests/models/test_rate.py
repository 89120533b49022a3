"""Long-reach rate integration of the stream's spike counts (models/cloud/rate.py)."""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.cloud.rate import RateConfig, RateIntegration  # noqa: E402
from sci_edge.models.end.extract import FeatureExtractor  # noqa: E402
from sci_edge.recon import tfp  # noqa: E402
from sci_edge.sim import simulate  # noqa: E402
from sci_edge.stream import FeatureStream, count_interval, interval_counts  # noqa: E402


def _forced(keep_logit: float, mix_logit: float = 0.0) -> RateIntegration:
    """Gate and blend with fixed outputs: keep and mix probabilities sigmoid(logit)."""
    r = RateIntegration(RateConfig(enabled=True, width=4))
    for net, logit in ((r.gate, keep_logit), (r.mix, mix_logit)):
        torch.nn.init.zeros_(net[-1].weight)
        torch.nn.init.constant_(net[-1].bias, logit)
    return r.requires_grad_(False)


def _counts(B=2, N=9, H=6, W=7, stride=5, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, stride + 1, (B, N, H, W)).astype(np.float32))


def test_a_gate_that_always_keeps_gives_the_whole_streams_rate_at_every_position():
    c = _counts()
    mean, reach = _forced(40.0)(c, 5, list(range(9)))
    np.testing.assert_allclose(mean, (c.sum(1, keepdim=True) / 45).expand_as(c), atol=1e-5)
    np.testing.assert_allclose(reach, np.full(c.shape, 9.0), atol=1e-4)


def test_a_gate_that_never_keeps_gives_each_intervals_own_rate():
    c = _counts()
    mean, reach = _forced(-40.0)(c, 5, [0, 4, 8])
    np.testing.assert_allclose(mean, c[:, [0, 4, 8]] / 5, atol=1e-6)
    np.testing.assert_allclose(reach, np.ones((2, 3, 6, 7)), atol=1e-6)


@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_lookahead_bounds_the_later_intervals_each_output_reads(lookahead):
    c = _counts(N=8)
    mean, _ = _forced(40.0)(c, 5, list(range(8)), lookahead=lookahead)
    for i in range(8):
        ref = c[:, :min(8, i + 1 + lookahead)].sum(1) / (5 * min(8, i + 1 + lookahead))
        np.testing.assert_allclose(mean[:, i], ref, atol=1e-5)
    # what lies beyond the look-ahead changes nothing
    later = c.clone()
    later[:, 5:] = 0
    cut, _ = _forced(1.0)(later, 5, [2], lookahead=2)
    full, _ = _forced(1.0)(c, 5, [2], lookahead=2)
    np.testing.assert_allclose(cut, full, atol=0)


def test_one_backward_pass_equals_each_outputs_own_backward_run():
    r = RateIntegration(RateConfig(enabled=True, width=4)).requires_grad_(False)
    torch.nn.init.normal_(r.gate[-1].weight, std=0.5)
    c = _counts(N=7)
    a, na = r(c, 5, [1, 3, 6])
    b, nb = r(c, 5, [1, 3, 6], lookahead=5)   # bounded, reaching the end from position 1
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(na, nb, atol=1e-5)


def test_the_cap_bounds_the_count():
    _, reach = _forced(40.0)(_counts(N=12), 5, [11], cap=3.0, lookahead=0)
    np.testing.assert_allclose(reach, 3.0, atol=1e-5)


def test_the_blend_runs_from_the_windowed_output_to_the_long_mean():
    base = torch.rand(1, 1, 5, 6)
    mean, reach = torch.rand(1, 1, 5, 6), torch.full((1, 1, 5, 6), 10.0)
    np.testing.assert_allclose(_forced(0.0, -40.0).blend(base, mean, reach, 5), base, atol=1e-6)
    np.testing.assert_allclose(_forced(0.0, 40.0).blend(base, mean, reach, 5), mean, atol=1e-6)


@pytest.mark.parametrize("k", [3, 7, 15, 31])
@pytest.mark.parametrize("shape", [(2, 1, 9, 12), (1, 3, 40, 33)])
def test_the_separable_neighbourhood_mean_is_the_square_one(k, shape):
    from torch.nn import functional as F

    from sci_edge.models.cloud.rate import _pool

    x = torch.rand(shape, generator=torch.Generator().manual_seed(k))
    ref = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    np.testing.assert_allclose(_pool(x, k), ref, atol=1e-6)


def test_the_blend_takes_a_stride_per_item():
    torch.manual_seed(0)
    r = RateIntegration(RateConfig(enabled=True, width=4))
    torch.nn.init.normal_(r.mix[-1].weight, std=0.5)
    r.requires_grad_(False)
    base, mean = torch.rand(3, 1, 9, 8) * 0.3, torch.rand(3, 1, 9, 8) * 0.3
    reach = torch.rand(3, 1, 9, 8) * 40 + 1
    strides = torch.tensor([5, 20, 50])
    each = torch.cat([r.blend(base[i:i + 1], mean[i:i + 1], reach[i:i + 1], int(s))
                      for i, s in enumerate(strides)])
    np.testing.assert_allclose(r.blend(base, mean, reach, strides), each, atol=1e-6)
    assert not torch.allclose(r.blend(base, mean, reach, 5), each)     # the stride matters


def test_the_evidence_of_an_if_pixel_stays_within_spikes_under_constant_light():
    # the gate's evidence: a static integrate-and-fire pixel's counts never drift
    # from its rate by more than a few spikes over any run of intervals, while a
    # change of light makes it grow with every interval
    light = np.full((400, 4, 4), 0.37, np.float32)
    light[200:, :2] = 0.6
    spikes = simulate(light, alpha=0.5, seed=3)
    c = torch.from_numpy(interval_counts(spikes, range(2, 398, 5), 5).astype(np.float32))[None]
    r = _forced(40.0)
    state = None
    for i in range(c.shape[1]):
        state = r.step(c[:, i:i + 1], state, 5, float("inf"))
        e = state.evidence(5).abs()
        assert float(e[..., 2:, :].max()) < 1.5                       # still
        if i == 55:                                                   # 75 steps after
            assert float(e[:, 1, :2, :].min()) > 2.0


@pytest.mark.parametrize("bad", [dict(stride=0), dict(cap=0.5), dict(lookahead=-1),
                                 dict(lookahead=1.5), dict(at=[9])])
def test_bad_arguments_are_refused(bad):
    args = {"stride": 5, "at": [0], **bad}
    with pytest.raises(ValueError):
        _forced(0.0)(_counts(), args.pop("stride"), args.pop("at"), **args)


# --- the counts on the end side ----------------------------------------------------------
def test_interval_counts_tile_the_time_line_and_match_numpy():
    rng = np.random.default_rng(1)
    spikes = (rng.random((53, 5, 7)) < 0.4).astype(np.uint8)
    times = list(range(6, 47, 5))
    c = interval_counts(spikes, times, 5)
    for i, t in enumerate(times):
        a, b = count_interval(t, 5)
        np.testing.assert_array_equal(c[i], spikes[a:b].sum(0))
    assert count_interval(times[1], 5)[0] == count_interval(times[0], 5)[1]
    # clipped at the ends, and a region crops
    c = interval_counts(spikes, [0, 52], 9, region=(1, 4, 2, 7))
    np.testing.assert_array_equal(c[0], spikes[0:5, 1:4, 2:7].sum(0))
    np.testing.assert_array_equal(c[1], spikes[48:53, 1:4, 2:7].sum(0))
    with pytest.raises(DataError, match="stride"):
        interval_counts(spikes, times, 0)
    T = spikes.shape[0]
    for times in ([T], [-1], [2.5]):
        with pytest.raises(DataError, match="count times"):
            interval_counts(spikes, times, 5)
    for region in ((0, 0, 0, 2), (1, 4, 2, 99), (-1, 2, 0, 2)):
        with pytest.raises(DataError, match="not inside"):
            interval_counts(spikes, [5], 5, region=region)


def test_the_grid_stream_carries_counts_in_the_windows_frame():
    rng = np.random.default_rng(2)
    spikes = (rng.random((60, 8, 12)) < 0.4).astype(np.uint8)
    model = _model()
    stream = FeatureExtractor(model.fem, spikes).grid_stream(4, gain=0.6)
    assert stream.counts.dtype == np.uint8 and stream.counts.shape == stream.features.shape
    np.testing.assert_array_equal(stream.counts, interval_counts(spikes, stream.times, 4))
    turned = FeatureExtractor(model.fem, spikes, transform=(1, False)).grid_stream(4)
    np.testing.assert_array_equal(turned.counts, np.rot90(stream.counts, 1, axes=(1, 2)))
    assert FeatureExtractor(model.fem, spikes).grid_stream(4, counts=False).counts is None


@pytest.mark.parametrize("counts, stride, match", [
    (np.zeros((3, 4, 5), np.uint8), 5, "shape"),
    (np.zeros((2, 4, 5), np.float32), 5, "integers"),
    (-np.ones((2, 4, 5), np.int16), 5, "non-negative"),
    (np.full((2, 4, 5), 6, np.uint8), 5, "fires at most once"),
    (np.zeros((2, 4, 5), np.uint8), None, "regular"),
])
def test_a_stream_refuses_bad_counts(counts, stride, match):
    with pytest.raises(DataError, match=match):
        FeatureStream(times=[6, 11], features=np.zeros((2, 4, 5), np.float32), num_steps=20,
                      stride=stride, counts=counts)


# --- in the model ----------------------------------------------------------------------------
def _model(rate=True, seed=0, keep=None, mix=None):
    torch.manual_seed(seed)
    cfg = SCIConfig(analysis=AnalysisConfig(neighbors=2, stride=4, width=8, fuse_levels=1),
                    rate=RateConfig(enabled=rate, width=4))
    model = SCIModel(cfg).eval()
    torch.nn.init.normal_(model.fem.out.weight, std=0.05)
    if model.rate is not None:
        for net, logit in ((model.rate.gate, keep), (model.rate.mix, mix)):
            if logit is None:
                torch.nn.init.normal_(net[-1].weight, std=0.5)
            else:
                torch.nn.init.zeros_(net[-1].weight)
                torch.nn.init.constant_(net[-1].bias, logit)
    return model


def _spikes(T=80, H=20, W=24, seed=0):
    return (np.random.default_rng(seed).random((T, H, W)) < 0.3).astype(np.uint8)


def test_a_model_without_rate_has_the_state_and_config_of_older_checkpoints():
    model = _model(rate=False)
    assert model.rate is None and not any(k.startswith("rate.") for k in model.state_dict())
    old = model.config.to_dict()
    del old["rate"]
    assert SCIConfig.from_dict(old) == dataclasses.replace(model.config, rate=RateConfig())
    on = _model().config
    assert SCIConfig.from_dict(on.to_dict()) == on


def test_rate_off_is_the_windowed_model_and_on_changes_the_output():
    with_r, without = _model(), _model(rate=False)
    without.load_state_dict({k: v for k, v in with_r.state_dict().items()
                             if not k.startswith("rate.")})
    spikes, times = _spikes(), [40, 41, 3, 76]
    off = with_r.reconstruct(spikes, times, 0.6, propagate=False)
    np.testing.assert_allclose(off, without.reconstruct(spikes, times, 0.6), atol=0)
    on = with_r.reconstruct(spikes, times, 0.6)
    assert np.abs(on[:2] - off[:2]).max() > 1e-4
    # 3 and 76 lie on no full feature grid (the clipped ends): left as they are
    np.testing.assert_allclose(on[2:], off[2:], atol=0)


def test_a_still_scene_with_a_keeping_gate_gives_tfp_over_the_whole_grid():
    model = _model(keep=40.0, mix=40.0)
    frame = np.random.default_rng(4).random((1, 12, 16)).astype(np.float32)
    spikes = simulate(frame.repeat(120, 0), alpha=0.5, seed=1)
    t = 58                                  # the grid through 58: 6..110 every 4
    out = model.reconstruct(spikes, [t], 0.5)[0]
    grid = list(range(6, 114, 4))
    a, b = count_interval(grid[0], 4)[0], count_interval(grid[-1], 4)[1]
    assert (a, b) == (4, 112)
    np.testing.assert_allclose(out, np.clip(spikes[a:b].mean(0) / 0.5, 0, 1), atol=1e-5)
    # as close to the light as a TFP of that length, far closer than the windowed output
    err = np.abs(out - frame[0]).mean()
    assert err < np.abs(tfp(spikes, t, 20, 0.5) - frame[0]).mean()
    assert err < 0.5 * np.abs(model.reconstruct(spikes, [t], 0.5, propagate=False)[0]
                              - frame[0]).mean()


def test_spikes_and_the_grid_stream_give_the_same_output():
    model, spikes = _model(), _spikes()
    t = 42
    start = 6 + (t - 6) % 4
    stream = FeatureExtractor(model.fem, spikes).grid_stream(4, start=start, gain=0.6)
    for kw in ({}, {"reach": 8}, {"lookahead": 0}, {"lookahead": 2}):
        a = model.reconstruct(spikes, [t, t + 8], 0.6, **kw)
        b = model.reconstruct_stream(stream, [t, t + 8], **kw)
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=str(kw))
    # a stream without counts (a decoded one) gets the windowed output
    bare = FeatureStream(times=stream.times, features=stream.features,
                         num_steps=stream.num_steps, stride=4, gain=0.6)
    np.testing.assert_allclose(model.reconstruct_stream(bare, [t]),
                               model.reconstruct_stream(stream, [t], propagate=False), atol=0)


def test_tiles_and_ensembles_blend_on_the_whole_frame():
    model, spikes = _model(), _spikes(T=40, H=40, W=70)
    a = model.reconstruct(spikes, [18, 22], 0.6)
    b = model.reconstruct(spikes, [18, 22], 0.6, tile=32)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_training_forward_blends_the_windowed_output():
    model = _model(keep=40.0, mix=-40.0)
    spikes = torch.from_numpy(_spikes(T=43))[None].float()
    counts = torch.stack([spikes[:, a:a + 4].sum(1) for a in range(1, 41, 4)], 1)
    with torch.no_grad():
        pred, base, _ = model(model.windows_at(spikes, 21), counts=counts, count_stride=4,
                           count_at=5)
    np.testing.assert_allclose(pred, base, atol=1e-6)
    assert pred.shape == (1, 1, 20, 24)


@pytest.mark.parametrize("bad", [dict(reach=0), dict(lookahead=-1)])
def test_bad_reach_options_name_the_problem(bad):
    with pytest.raises(DataError, match="reach|lookahead"):
        _model().reconstruct(_spikes(), [40], 0.6, **bad)


def _shipped_recon():
    from sci_edge.models.pretrained import pretrained_path

    path = pretrained_path("recon")
    if not path.is_file():
        pytest.skip("shipped recon weights absent")
    return path


def test_the_shipped_recon_model_comes_with_its_rate_integration():
    from sci_edge.models.pretrained import RATE_ADDON, WEIGHTS_DIR, load_pretrained

    _shipped_recon()
    if not (WEIGHTS_DIR / RATE_ADDON).is_file():
        pytest.skip(f"{RATE_ADDON} not shipped in this checkout")
    model = load_pretrained("recon", rate=True)
    assert model.rate is not None and model.propagation is None
    assert load_pretrained("recon").rate is not None            # on where shipped
    assert load_pretrained("recon", rate=False).rate is None    # the windowed model
    assert load_pretrained("recon", propagation=True).rate is None
    with pytest.raises(DataError, match="recon"):
        load_pretrained("cls", rate=True)
    with pytest.raises(DataError, match="one long-reach"):
        load_pretrained("recon", rate=True, propagation=True)
    assert (WEIGHTS_DIR / RATE_ADDON).stat().st_size < 64 * 1024


def test_a_stream_at_another_stride_is_read_at_its_own_stride():
    model, spikes = _model(), _spikes(T=120)
    ext = FeatureExtractor(model.fem, spikes)
    wide = ext.grid_stream(12, gain=0.6)                  # every 12 steps, model: 4
    t = int(wide.times[4])
    assert model.read_stride(wide, [t]) == 12
    out = model.reconstruct_stream(wide, [t])
    win = model.reconstruct_stream(wide, [t], propagate=False)
    with torch.no_grad():
        feats = ext.get(model.output_times(t, 120, 12))[None]
        ref = np.clip(model.analyse(feats)[0].numpy() / 0.6, 0, 1)
    np.testing.assert_allclose(win, ref, atol=1e-5)
    assert np.abs(out - win).max() > 1e-4                 # its counts blend in
    # a stream that holds the model's times is read at the model's stride
    fine = ext.grid_stream(2, gain=0.6)
    assert model.read_stride(fine, [int(fine.times[20])]) == 4
