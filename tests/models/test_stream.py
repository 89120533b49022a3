"""The end/cloud seam: feature streams, shared features, streaming sources."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.io import ArraySource, open_spikes, write_dat  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.stream import FeatureStream  # noqa: E402


def _model(task="recon", seed=0):
    torch.manual_seed(seed)
    cfg = SCIConfig(task=task, analysis=AnalysisConfig(neighbors=2, stride=4, width=8,
                                                       fuse_levels=1))
    model = SCIModel(cfg).eval()
    # non-zero heads and flows, so the outputs depend on everything they read
    a = model.analysis
    for mod in (a.flow.head, getattr(model.head, "out", None), model.fem.out,
                a.afr_prev.offsets[-1], a.afr_next.offsets[-1]):   # fractional offsets too
        if mod is not None:
            torch.nn.init.normal_(mod.weight, std=0.05)
    return model


def _spikes(T=60, H=19, W=27, seed=0):
    return (np.random.default_rng(seed).random((T, H, W)) < 0.3).astype(np.uint8)




@pytest.mark.parametrize("times", [[30], [0, 3, 59, 30, 30, 31, 17], list(range(14, 50, 4))])
def test_stream_path_equals_the_per_output_path(times):
    model, spikes = _model(), _spikes()
    new = model.reconstruct(spikes, times, 0.7)
    old = model.reconstruct_windowed(spikes, times, 0.7)
    assert new.shape == (len(times), 19, 27)
    np.testing.assert_allclose(new, old, atol=1e-5)


@pytest.mark.slow
def test_stream_path_equals_with_tiles_and_ensemble():
    model, spikes = _model(), _spikes(T=45, H=40, W=70)
    for options in ({"tile": 32}, {"ensemble": True}, {"tile": 33, "ensemble": True}):
        np.testing.assert_allclose(model.reconstruct(spikes, [20, 24], 0.5, **options),
                                   model.reconstruct_windowed(spikes, [20, 24], 0.5, **options),
                                   atol=1e-5, err_msg=str(options))


def test_each_feature_is_computed_once():
    model, spikes = _model(), _spikes(T=120)
    ext = model.extractor(spikes)
    times = list(range(20, 100, 4))                  # a run at the feature rate (stride 4)
    rates = model._rates(ext, times, 120, None)
    assert rates.shape == (len(times), 19, 27)
    distinct = {u for t in times for u in model.output_times(t, 120)}
    assert ext.computed == len(distinct) == len(times) + 4    # about one window per output
    assert ext.computed < len(times) * model.num_features / 4


def test_a_source_is_read_window_by_window(tmp_path):
    model = _model()
    spikes = _spikes(T=2000, H=9, W=11)
    src = ArraySource(spikes)
    out = model.reconstruct(src, [100, 1500], 0.5)
    assert src.frames_read < 2 * 5 * 13 + 10              # the two outputs' windows only
    np.testing.assert_allclose(out, model.reconstruct_windowed(spikes, [100, 1500], 0.5),
                               atol=1e-5)
    dat = write_dat(tmp_path / "long.dat", spikes)
    from_file = model.reconstruct(open_spikes(dat, height=9, width=11), [100, 1500], 0.5)
    np.testing.assert_array_equal(from_file, out)


def test_cloud_side_reads_any_feature_stream():
    model, spikes = _model(), _spikes(T=80)
    times = [26, 30, 34]
    ext = model.extractor(spikes)
    needed = sorted({u for t in times for u in model.output_times(t, 80)})
    stream = ext.stream(needed, gain=0.7)
    assert isinstance(stream, FeatureStream) and list(stream.times) == needed
    np.testing.assert_allclose(model.reconstruct_stream(stream, times),
                               model.reconstruct(spikes, times, 0.7), atol=1e-5)
    # a regular stream, as the codec sends it: outputs on its grid
    grid = ext.grid_stream(4, gain=0.7)
    assert grid.stride == 4 and np.all(np.diff(grid.times) == 4)
    np.testing.assert_allclose(model.reconstruct_stream(grid, times),
                               model.reconstruct(spikes, times, 0.7), atol=1e-5)
    with pytest.raises(DataError, match="no feature at spike time 23"):
        model.reconstruct_stream(grid, [31])
    with pytest.raises(DataError, match="gain"):
        model.reconstruct_stream(ext.stream(needed), times)      # no gain known


def test_external_motion_vectors_drive_the_alignment():
    model, spikes = _model(), _spikes(T=80)
    t = 30
    ft = model.output_times(t, 80)
    stream = model.extractor(spikes).stream(ft, gain=0.7)
    own = model.reconstruct_stream(stream, [t])
    # the flows the analysis would estimate, given explicitly: same output
    from sci_edge.models.layers import pad_to_multiple

    feats = pad_to_multiple(torch.from_numpy(stream.at(ft))[None], 4)[0]
    with torch.no_grad():
        est = model.analysis.estimate_flows(feats)[0, ..., :19, :27].numpy()
    K = model.config.analysis.neighbors
    nbs = [u for k, u in enumerate(ft) if k != K]
    stream.flows = {(t, u): est[i] for i, u in enumerate(nbs)}
    np.testing.assert_allclose(model.reconstruct_stream(stream, [t]), own, atol=1e-5)
    stream.flows = {(t, u): np.full((2, 19, 27), 3.0, np.float32) for u in nbs}
    assert np.abs(model.reconstruct_stream(stream, [t]) - own).max() > 1e-3


def test_classify_goes_through_streams():
    model = _model("cls")
    spikes = np.stack([_spikes(T=41, H=28, W=28, seed=s) for s in range(3)])
    logits = model.classify(spikes)
    with torch.no_grad():
        ref = model(model.windows_at(torch.from_numpy(spikes).float(), 20)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    streams = [model.extractor(s).stream(model.output_times(20, 41)) for s in spikes]
    np.testing.assert_allclose(model.classify_stream(streams), logits, atol=1e-5)
    np.testing.assert_allclose(model.classify(spikes, batch=2), logits, atol=1e-5)


def test_feature_stream_checks_its_fields():
    f = np.zeros((3, 4, 5), np.float32)
    FeatureStream(times=[6, 11, 16], features=f, num_steps=30, stride=5, gain=0.5)
    for bad in ({"times": [6, 6, 16]}, {"times": [16, 11, 6]}, {"times": [6, 11, 30]},
                {"features": np.zeros((2, 4, 5))}, {"stride": 0}, {"gain": -1.0}):
        kw = dict(times=[6, 11, 16], features=f, num_steps=30, stride=5, gain=0.5) | bad
        with pytest.raises(DataError, match="feature stream"):
            FeatureStream(**kw)


def test_extractor_errors_name_the_problem():
    model = _model()
    with pytest.raises(DataError, match="at least 13"):
        model.extractor(_spikes(T=12))
    ext = model.extractor(_spikes(T=30))
    with pytest.raises(DataError, match="no full 13-frame window"):
        ext.get([3])
    with pytest.raises(DataError, match="region"):
        model.extractor(_spikes(T=30), region=(0, 40, 0, 5))
