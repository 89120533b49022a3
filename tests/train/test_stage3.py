"""Stage III: the codec on cached FEM features, then the cloud side on decoded ones."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.errors import ConfigError  # noqa: E402
from sci_edge.models.codec import load_coded  # noqa: E402
from sci_edge.models.pretrained import pretrained_path  # noqa: E402
from sci_edge.train import load_config, train  # noqa: E402
from sci_edge.train.feature_cache import load_feature_cache  # noqa: E402

SMALL_CODEC = """
[model.codec]
channels = 8
hyper_channels = 4
encoder_width = 8
hyper_width = 8
decoder_width = 8
qualities = 2
levels = 16
"""


def _config(tmp_path, task: str, extra: str = "") -> str:
    init = pretrained_path("recon")
    if not init.is_file():
        pytest.skip("shipped recon weights absent")
    body = f"""
stage = 3
task = "{task}"
out_dir = "{tmp_path / task}"
{"init = '" + str(init) + "'" if task == "codec" else ""}
lambdas = [100.0, 1000.0]
{extra}
{SMALL_CODEC if task == "codec" else ""}
[data]
size = [32, 32]
speeds = [0.0, 1.0]
alpha = [0.1, 0.9]
val_items = 2
cache = "{tmp_path / 'cache.npz'}"
cache_items = 2
cache_size = [48, 48]
[optim]
steps = 3
batch = 2
warmup = 1
[log]
every = 1
eval_every = 3
checkpoint_every = 3
"""
    path = tmp_path / f"{task}.toml"
    path.write_text(body)
    return str(path)


@pytest.mark.slow
def test_stage3_codec_then_recon(tmp_path):
    cfg = load_config(_config(tmp_path, "codec", "codec_frames = 3"),
                      ["workers=0", "threads=1"])
    res = train(cfg, quiet=True)
    assert res["step"] == 3 and np.isfinite(res["val_bpp"]) and res["val_bpp"] > 0
    cache = load_feature_cache(tmp_path / "cache.npz")
    assert cache["features"].shape == (2, 7, 48, 48)
    assert (tmp_path / "cache_val.npz").is_file()
    coded = load_coded(tmp_path / "codec" / "final.pt")
    assert coded.codec.tables is not None         # final.pt carries the integer tables
    enc0 = {k: v.clone() for k, v in coded.codec.encoder.state_dict().items()}
    cfg = load_config(_config(tmp_path, "recon", f"init_codec = '{tmp_path}/codec/final.pt'"),
                      ["workers=0", "threads=1"])
    res = train(cfg, quiet=True)
    assert np.isfinite(res["val_psnr"])
    tuned = load_coded(tmp_path / "recon" / "final.pt")
    # the end side is frozen in stage III, the cloud side is not
    for k, v in tuned.codec.encoder.state_dict().items():
        assert torch.equal(v, enc0[k])
    assert any(not torch.equal(a, b) for a, b in zip(tuned.sci.analysis.parameters(),
                                                     coded.sci.analysis.parameters()))


def test_stage3_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="init_codec"):
        load_config(_config(tmp_path, "recon"))
    with pytest.raises(ConfigError, match="lambdas"):
        load_config(_config(tmp_path, "codec"), ["lambdas=[1.0]"])


def test_a_damaged_feature_cache_is_a_clear_error(tmp_path):
    from sci_edge.errors import DataError

    bad = tmp_path / "cache.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="cache.npz: unreadable feature cache"):
        load_feature_cache(bad)
    np.savez(tmp_path / "other.npz", format=np.array("something else"))
    with pytest.raises(DataError, match="not a sci_edge feature cache"):
        load_feature_cache(tmp_path / "other.npz")
