"""eval rd: rate-distortion of the codec beside CAAS/ATC/CTA, on one tiny scene."""
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.eval import baselines as bl  # noqa: E402
from sci_edge.eval import rd  # noqa: E402
from sci_edge.metrics import psnr  # noqa: E402
from sci_edge.models.coding import compress, decompress  # noqa: E402
from tests.models.codec_fixtures import save_small, small_coded  # noqa: E402

# small_coded's cloud side reads features 7 steps apart: the grid stride must divide 7
STRIDE = 7
QUALITIES = (0, 2)
CRFS = (24, 36)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny tensors: a second thread only adds overhead (and contention on a shared machine)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return small_coded()


@pytest.fixture(scope="module")
def items():
    return rd.rd_items("scenes", limit=1, size=(40, 48))


@pytest.fixture(scope="module")
def report(model, items):
    if bl.available("x265") is not None:
        pytest.skip(f"skipped x265: {bl.available('x265')}")
    return rd.evaluate_rd(model, items, qualities=QUALITIES, stride=STRIDE, crfs_x265=CRFS,
                          crfs_cta=(34, 40), baselines=("x265", "atc", "cta"),
                          shipped=small_coded(1).sci, data="scenes")


def test_align_item_puts_t_and_the_ends_on_the_grid():
    spikes = np.zeros((61, 4, 4), np.uint8)
    for stride in (1, 5, 7):
        cut, t, offset = rd.align_item(spikes, 30, stride)
        assert t == 30 - offset and 0 <= offset < stride
        assert (t - 6) % stride == 0 and (cut.shape[0] - 13) % stride == 0
        assert 61 - stride < cut.shape[0] + offset <= 61
    with pytest.raises(DataError, match="window"):
        rd.align_item(spikes, 57, 5)


def test_structure_and_rate_formula(report, items):
    (item,) = report.items
    assert item.name == items[0].name and item.t == items[0].t
    assert (item.t - item.offset - 6) % STRIDE == 0
    assert (item.height, item.width) == (40, 48)
    methods = [c.method for c in item.curves]
    assert methods == ["ours", "caas-x265/codec-cloud", "caas-x265/shipped-cloud", "atc-x265",
                       "cta-lossy-x265", "cta-lossless"]
    assert [p.param for p in item.curve("ours").points] == ["Q0", "Q2"]
    assert [p.param for p in item.curve("atc-x265").points] == ["CRF24", "CRF36"]
    pixels = item.steps * item.height * item.width
    for c in item.curves:
        coded = item.steps if c.method.startswith("cta") else item.frames
        for p in c.points:
            assert isinstance(p.bits, int) and p.bits > 0
            assert p.bpsp == pytest.approx(p.bits / pixels)
            assert p.bpp == pytest.approx(p.bits / (coded * item.height * item.width))
            assert (p.psnr is None) == c.lossless
    assert [p.param for p in item.curve("cta-lossless").points] == ["zstd", "xz", "jbig"]
    # one item: the mean curves are the item's own
    assert report.mean_curves == item.curves
    assert report.mean_uncompressed_psnr == item.uncompressed_psnr
    assert report.skipped == ()
    assert report.machine.cpus >= 1
    assert "steps x H x W" in report.rate_basis


def test_bits_are_the_real_stream_sizes(report, model, items):
    (item,) = report.items
    spikes, t, _ = rd.align_item(items[0].spikes, items[0].t, STRIDE)
    assert spikes.shape[0] == item.steps
    for point, q in zip(item.curve("ours").points, QUALITIES):
        buf = io.BytesIO()
        compress(model, spikes, buf, quality=q, stride=STRIDE, gain=item.gain)
        data = buf.getvalue()
        assert point.bits == 8 * len(data) == decompress(model, data).bits
    for point, (method, layout) in zip(item.curve("cta-lossless").points, rd.LOSSLESS):
        assert point.bits == bl.spikes_lossless(spikes, method, layout=layout).bits
    assert item.frames == len(range(6, item.steps - 6, STRIDE))


def test_uncompressed_line_is_the_model_on_the_spikes(report, model, items):
    it = items[0]
    direct = model.sci.reconstruct(it.spikes, [it.t], it.gain)[0]
    assert report.items[0].uncompressed_psnr == pytest.approx(psnr(direct, it.gt), abs=1e-3)


def test_bd_entries_and_json(report):
    (item,) = report.items
    anchors = {"caas-x265/codec-cloud", "caas-x265/shipped-cloud", "atc-x265", "cta-lossy-x265"}
    for scope in (item.name, "mean-curve", "mean-of-items"):
        got = {e.anchor for e in report.bd if e.scope == scope}
        assert got == anchors, scope
    assert all(e.test == "ours" for e in report.bd)
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert doc["rate_basis"] == rd.RATE_BASIS and doc["data"] == "scenes"
    assert doc["items"][0]["curves"][0]["points"][0]["bits"] == item.curves[0].points[0].bits
    assert {e["scope"] for e in doc["bd"]} == {item.name, "mean-curve", "mean-of-items"}
    text = "\n".join(rd.format_report(report))
    assert "caas-x265/shipped-cloud" in text and "BD" in text and "lossless" in text


def test_plot_is_written(report, tmp_path):
    pytest.importorskip("matplotlib")
    out = rd.plot_rd(report, tmp_path / "rd.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rd.png"]    # no temp file left


def _curve(method, rates, psnrs, lossless=False):
    return rd.RDCurve(method, tuple(rd.RDPoint(method, f"P{i}", int(r * 1e4), r, r, p, None)
                                    for i, (r, p) in enumerate(zip(rates, psnrs))), lossless)


def _item(name, curves):
    return rd.RDItemResult(name=name, t=30, offset=0, steps=50, height=8, width=8, frames=9,
                           gain=0.5, uncompressed_psnr=30.0, uncompressed_ssim=0.9,
                           shipped_uncompressed_psnr=None, tfp_psnr=20.0, curves=tuple(curves))


def test_bd_values_on_known_curves():
    rates = np.array([0.01, 0.02, 0.04, 0.08])
    psnrs = [20.0, 23.0, 26.0, 29.0]
    items = [_item(f"i{k}", [_curve("ours", rates * s, psnrs), _curve("anchor", rates, psnrs),
                             _curve("far", rates, [p - 20 for p in psnrs]),
                             _curve("cta-lossless", [0.5], [None], lossless=True)])
             for k, s in enumerate((0.5, 0.8))]
    means = rd._mean_curves(items)
    assert means[0].points[0].bpsp == pytest.approx(0.01 * 0.65)
    bd = {(e.scope, e.anchor): e for e in rd._bd_entries(items, means)}
    assert {a for _, a in bd} == {"anchor", "far"}       # lossless curves are no anchors
    assert bd["i0", "anchor"].bd_rate == pytest.approx(-50.0, abs=1e-6)
    assert bd["i1", "anchor"].bd_rate == pytest.approx(-20.0, abs=1e-6)
    assert bd["mean-of-items", "anchor"].bd_rate == pytest.approx(-35.0, abs=1e-6)
    assert bd["mean-curve", "anchor"].bd_rate == pytest.approx(-35.0, abs=1e-6)
    assert bd["mean-curve", "anchor"].bd_psnr > 0
    far = bd["mean-curve", "far"]        # no PSNR overlap: no BD-rate, a saving instead
    assert far.bd_rate is None and far.saving_at_anchor_best is not None and far.note


def test_a_missing_tool_skips_its_curves(model, items, monkeypatch):
    monkeypatch.setattr(bl, "available", lambda codec: f"{codec} is away")
    got = rd.evaluate_rd(model, items, qualities=(1,), stride=STRIDE)
    assert [c.method for c in got.items[0].curves] == ["ours"]
    assert got.bd == ()
    assert "caas-x265: x265 is away" in got.skipped
    assert "caas-av1: av1 is away" in got.skipped
    assert "atc-x265: x265 is away" in got.skipped
    assert "cta-lossy-x265: x265 is away" in got.skipped
    assert {f"cta-lossless/{m}: {m} is away" for m in ("zstd", "xz", "jbig")} <= set(got.skipped)
    assert "skipped caas-x265: x265 is away" in "\n".join(rd.format_report(got))
    json.dumps(got.to_dict(), allow_nan=False)


def test_classic_codecs_get_our_intra_period(model, items, monkeypatch):
    # CAAS and ATC code with the same GOP as ours, else x265 would pay fewer I frames
    seen = []

    def spy(frames, codec, crf, **kw):
        seen.append((codec, kw.get("keyint")))
        return bl.CodedVideo(decoded=np.asarray(frames, np.float32), bits=8000, codec=codec,
                             crf=crf, preset="medium", coded_size=frames.shape[1:],
                             pix_fmt="gray10le")

    monkeypatch.setattr(bl, "available", lambda codec: None)
    monkeypatch.setattr(bl, "code_features", spy)
    monkeypatch.setattr(bl, "code_images", spy)
    got = rd.evaluate_rd(model, items, qualities=(0,), stride=STRIDE, intra_period=3,
                         crfs_x265=(30,), crfs_av1=(40,), baselines=("x265", "av1", "atc"))
    assert sorted(set(seen)) == [("av1", 3), ("x265", 3)] and len(seen) == 3
    assert "the same intra period" in "\n".join(rd.format_report(got))


def test_bad_options(model, items):
    with pytest.raises(DataError, match="every 7 steps"):
        rd.evaluate_rd(model, items, stride=5, baselines=())
    with pytest.raises(DataError, match="qualities"):
        rd.evaluate_rd(model, items, qualities=(3,), stride=STRIDE, baselines=())
    with pytest.raises(DataError, match="unknown baseline"):
        rd.evaluate_rd(model, items, qualities=(0,), stride=STRIDE, baselines=("h264",))


def test_cli_rd_json_and_smnist_skip(capsys, tmp_path):
    from sci_edge.cli.main import main

    weights = save_small(tmp_path / "codec.pt")
    code = main(["eval", "rd", "--weights", str(weights), "--items", "1", "--qualities", "0",
                 "--stride", "7", "--baselines", "", "--json", "--quiet"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["settings"]["qualities"] == [0] and doc["settings"]["stride"] == 7
    assert [c["method"] for c in doc["mean_curves"]] == ["ours"]
    assert main(["eval", "rd", "--weights", str(weights), "--data", "smnist"]) == 0
    assert "skipped smnist: the codec's cloud side is for task 'recon'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "rd", "--weights", str(weights), "--baselines", "x265,h264"])
    assert "unknown baseline 'h264'" in capsys.readouterr().err


def test_edge_curves_against_ours(model, items, tmp_path):
    """The device encoder's curves: the same spikes and cloud side; fp32 on onnxruntime
    gives ours again (the same symbols, so the same bits and image), INT8 may differ;
    their BD entries are against ours."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from sci_edge.export.bundle import export_bundle
    from tests.export import scene_spikes

    export_bundle(model, tmp_path / "b", trt=False, size=(32, 32),
                  calibration=scene_spikes(1, size=(48, 48), num_steps=20, seed=3))
    got = rd.evaluate_rd(model, items, qualities=(0, 1, 2), stride=STRIDE, baselines=(),
                         edge=("fp32", "int8"), bundle=tmp_path / "b")
    it = got.items[0]
    ours, f32, i8 = (it.curve(m) for m in (rd.OURS, rd.edge_curve("fp32"),
                                           rd.edge_curve("int8")))
    assert [p.param for p in i8.points] == ["Q0", "Q1", "Q2"]
    for a, b in zip(ours.points, f32.points):
        assert abs(a.bits - b.bits) <= 8 * 16 and abs(a.psnr - b.psnr) < 0.05
    assert all(p.bits > 0 and p.psnr is not None for p in i8.points)
    mine = [e for e in got.bd if e.scope == "mean-curve" and e.test == rd.edge_curve("int8")]
    assert len(mine) == 1 and mine[0].anchor == rd.OURS
    assert got.settings.edge == ("fp32", "int8")
    assert rd.edge_curve("int8") in "\n".join(rd.format_report(got))
    with pytest.raises(DataError, match="deadzone"):
        rd.evaluate_rd(model, items, qualities=(0,), stride=STRIDE, baselines=(),
                       edge=("int8",), deadzone=0.2, bundle=tmp_path / "b")
    with pytest.raises(DataError, match="fp32 and int8"):
        rd.evaluate_rd(model, items, qualities=(0,), stride=STRIDE, baselines=(),
                       edge=("fp16",), bundle=tmp_path / "b")
