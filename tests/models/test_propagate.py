"""Long-reach propagation over the feature stream (models/cloud/propagate.py)."""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.cloud.propagate import (FeaturePropagation,  # noqa: E402
                                             PropagationConfig)
from sci_edge.models.end.extract import FeatureExtractor  # noqa: E402


def _forced(keep_logit: float) -> FeaturePropagation:
    """A propagation whose gate keeps the state with one fixed probability."""
    p = FeaturePropagation(PropagationConfig(enabled=True, width=4))
    torch.nn.init.zeros_(p.gate[-1].weight)
    torch.nn.init.constant_(p.gate[-1].bias, keep_logit)
    return p.requires_grad_(False)


def _features(B=2, N=9, H=6, W=7, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((B, N, H, W)).astype(np.float32))


def test_a_gate_that_always_keeps_gives_the_mean_of_the_whole_stream_at_every_time():
    f = _features()
    out = _forced(40.0)(f)
    np.testing.assert_allclose(out, f.mean(1, keepdim=True).expand_as(f), atol=1e-5)


def test_a_gate_that_never_keeps_passes_the_stream_as_it_is():
    f = _features()
    np.testing.assert_allclose(_forced(-40.0)(f), f, atol=1e-6)


@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_lookahead_bounds_the_later_features_each_output_reads(lookahead):
    f = _features(N=8)
    out = _forced(40.0)(f, lookahead=lookahead)
    for i in range(8):
        ref = f[:, :min(8, i + 1 + lookahead)].mean(1)
        np.testing.assert_allclose(out[:, i], ref, atol=1e-5)
    # a bound past the end is the full bidirectional pass
    np.testing.assert_allclose(_forced(40.0)(f, lookahead=7), _forced(40.0)(f), atol=1e-6)


def test_the_cap_turns_the_running_mean_into_an_exponential_one():
    f = _features(N=12)
    out = _forced(40.0)(f, cap=3.0, lookahead=0)
    s = f[:, 0].numpy().copy()
    n = 1.0
    for i in range(1, 12):
        n = min(n + 1.0, 3.0)
        s = s + (f[:, i].numpy() - s) / n
        np.testing.assert_allclose(out[:, i], s, atol=1e-5)


def test_later_features_do_not_reach_a_causal_output():
    f = _features(N=10)
    p = FeaturePropagation(PropagationConfig(enabled=True, width=4))
    torch.nn.init.normal_(p.gate[-1].weight, std=0.5)
    p.requires_grad_(False)
    g = f.clone()
    g[:, 6:] = 0.9                       # change the future only
    a, b = p(f, lookahead=1), p(g, lookahead=1)
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("bad", [dict(cap=0.5), dict(lookahead=-1), dict(lookahead=1.5)])
def test_bad_bounds_are_refused(bad):
    with pytest.raises(ValueError):
        _forced(0.0)(_features(), **bad)


def _model(propagation=True, seed=0):
    torch.manual_seed(seed)
    cfg = SCIConfig(analysis=AnalysisConfig(neighbors=2, stride=4, width=8, fuse_levels=1),
                    propagation=PropagationConfig(enabled=propagation, width=4))
    model = SCIModel(cfg).eval()
    torch.nn.init.normal_(model.fem.out.weight, std=0.05)
    if model.propagation is not None:
        torch.nn.init.normal_(model.propagation.gate[-1].weight, std=0.5)
        torch.nn.init.constant_(model.propagation.gate[-1].bias, 1.0)
    return model


def _spikes(T=80, H=20, W=24, seed=0):
    return (np.random.default_rng(seed).random((T, H, W)) < 0.3).astype(np.uint8)


def test_a_model_without_propagation_has_the_state_of_older_checkpoints():
    model = _model(propagation=False)
    assert model.propagation is None
    assert not any(k.startswith("propagation.") for k in model.state_dict())
    old = model.config.to_dict()
    del old["propagation"]
    assert SCIConfig.from_dict(old) == dataclasses.replace(model.config,
                                                           propagation=PropagationConfig())
    on = _model().config
    assert SCIConfig.from_dict(on.to_dict()) == on


def test_propagation_off_is_the_windowed_model_and_on_changes_the_output():
    with_p, without = _model(), _model(propagation=False)
    state = {k: v for k, v in with_p.state_dict().items() if not k.startswith("propagation.")}
    without.load_state_dict(state)
    spikes, times = _spikes(), [40, 41, 3, 76]
    off = with_p.reconstruct(spikes, times, 0.6, propagate=False)
    np.testing.assert_allclose(off, without.reconstruct(spikes, times, 0.6), atol=0)
    on = with_p.reconstruct(spikes, times, 0.6)
    assert np.abs(on - off).max() > 1e-4


def test_spikes_and_the_grid_stream_give_the_same_propagated_output():
    model, spikes = _model(), _spikes()
    t = 42
    start = 6 + (t - 6) % 4
    stream = FeatureExtractor(model.fem, spikes).grid_stream(4, start=start, gain=0.6)
    a = model.reconstruct(spikes, [t], 0.6)
    b = model.reconstruct_stream(stream, [t])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # with a reach, only the features within it are read
    c = model.reconstruct(spikes, [t], 0.6, reach=8)
    d = model.reconstruct_stream(stream, [t], reach=8)
    np.testing.assert_allclose(c, d, atol=1e-6)
    assert np.abs(c - a).max() > 1e-5


def test_reach_bounds_the_features_computed():
    model, spikes = _model(), _spikes(T=200)
    calls = []
    real = FeatureExtractor.compute

    def counting(self, times):
        calls.extend(int(t) for t in times)
        return real(self, times)

    FeatureExtractor.compute = counting
    try:
        model.reconstruct(spikes, [100], 0.6, reach=12)
    finally:
        FeatureExtractor.compute = real
    assert min(calls) >= 100 - 8 - 12 and max(calls) <= 100 + 8 + 12


def test_tiles_give_the_untiled_propagated_output():
    model, spikes = _model(), _spikes(T=40, H=40, W=70)
    a = model.reconstruct(spikes, [18, 22], 0.6)
    b = model.reconstruct(spikes, [18, 22], 0.6, tile=32)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(reach=0), dict(reach=2.5), dict(lookahead=-1)])
def test_bad_reach_options_name_the_problem(bad):
    with pytest.raises(DataError, match="reach|lookahead"):
        _model().reconstruct(_spikes(), [40], 0.6, **bad)


def test_a_stream_off_the_models_stride_is_read_as_it_is():
    model, spikes = _model(), _spikes()
    ext = FeatureExtractor(model.fem, spikes)
    stream = ext.stream(range(6, 74, 2), gain=0.6)       # every 2 steps, not 4
    a = model.reconstruct_stream(stream, [40])
    b = model.reconstruct_stream(stream, [40], propagate=False)
    np.testing.assert_allclose(a, b, atol=0)


def test_config_refuses_bad_widths():
    from sci_edge.config import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        dataclasses.replace(PropagationConfig(), width=0)


def _shipped_recon():
    from sci_edge.models.pretrained import pretrained_path

    path = pretrained_path("recon")
    if not path.is_file():
        pytest.skip("shipped recon weights absent")
    return path


@pytest.mark.parametrize("addon", ["propagation", "rate"])
def test_an_addon_on_the_shipped_model_exports_by_reference(tmp_path, addon):
    from sci_edge.errors import CheckpointError
    from sci_edge.models.checkpoint import load_checkpoint, save_checkpoint
    from sci_edge.models.cloud.rate import RateConfig
    from sci_edge.models.pretrained import load_model
    from sci_edge.train.export import export_weights

    base = _shipped_recon()
    doc = load_checkpoint(base)
    kind = PropagationConfig if addon == "propagation" else RateConfig
    cfg = dataclasses.replace(SCIConfig.from_dict(doc["model_config"]),
                              **{addon: kind(enabled=True, width=4)})
    model = SCIModel(cfg)
    missing = model.load_state_dict(doc["state"], strict=False).missing_keys
    assert missing and all(k.startswith(f"{addon}.") for k in missing)
    torch.nn.init.normal_(getattr(model, addon).gate[-1].weight, std=0.1)
    ckpt = save_checkpoint(tmp_path / "final.pt", kind="sci", model_config=cfg.to_dict(),
                           state=model.state_dict())
    out = export_weights(ckpt, tmp_path / "addon.pt")
    small = load_checkpoint(out)
    assert small["model_config"]["sci_from"]["file"] == base.name
    assert all(k.startswith(f"{addon}.") for k in small["state"])
    assert out.stat().st_size < 64 * 1024
    loaded = load_model(out)
    assert getattr(loaded, addon) is not None
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a base file that is not the one it was made with is refused, by name
    (tmp_path / base.name).write_bytes(base.read_bytes()[:-1] + b"x")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(out)


def test_the_shipped_recon_model_comes_with_its_propagation():
    from sci_edge.models.pretrained import REACH_ADDON, WEIGHTS_DIR, load_pretrained

    _shipped_recon()
    if not (WEIGHTS_DIR / REACH_ADDON).is_file():
        pytest.skip(f"{REACH_ADDON} not shipped in this checkout")
    assert load_pretrained("recon", propagation=True).propagation is not None
    assert load_pretrained("recon").propagation is None        # opt-in
    with pytest.raises(DataError, match="recon"):
        load_pretrained("cls", propagation=True)
    assert (WEIGHTS_DIR / REACH_ADDON).stat().st_size < 64 * 1024
