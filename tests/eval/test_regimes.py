"""eval recon --regimes: gain x speed grid, SCI with and without propagation vs TFP."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.cli.main import main  # noqa: E402
from sci_edge.errors import DataError  # noqa: E402
from sci_edge.eval.regimes import evaluate_regimes, regimes_table  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.cloud.propagate import PropagationConfig  # noqa: E402
from sci_edge.models.end.fem import FEMConfig  # noqa: E402


def _model(propagation=True):
    torch.manual_seed(0)
    return SCIModel(SCIConfig(fem=FEMConfig(4, 4, 8, 1),
                              analysis=AnalysisConfig(neighbors=1, stride=5, width=8),
                              propagation=PropagationConfig(enabled=propagation,
                                                            width=4))).eval()


def test_the_grid_has_every_regime_and_the_best_window_follows_the_motion():
    doc = evaluate_regimes(_model(), images=["astronaut"], gains=(0.5,), speeds=(0.0, 1.5),
                           windows=(11, 41), num_steps=64, size=(32, 32))
    assert [(r["gain"], r["speed"]) for r in doc["rows"]] == [(0.5, 0.0), (0.5, 1.5)]
    for r in doc["rows"]:
        assert r["tfp_best"] == max(r["tfp11"], r["tfp41"])
        assert r["sci_minus_best_tfp"] == pytest.approx(r["sci"] - r["tfp_best"])
        assert np.isfinite([r["sci"], r["sci_windowed"], r["tfi"]]).all()
    still, fast = doc["rows"]
    assert still["tfp_best_window"] == 41 and fast["tfp_best_window"] == 11
    assert doc["propagation"] and doc["worst_sci_minus_best_tfp"] == min(
        r["sci_minus_best_tfp"] for r in doc["rows"])
    text = regimes_table(doc)
    assert "TFP41" in text and len(text.splitlines()) == 3
    # a model without propagation: both SCI columns are the windowed model
    off = evaluate_regimes(_model(False), images=["astronaut"], gains=(0.5,), speeds=(0.0,),
                           windows=(11, 41), num_steps=64, size=(32, 32))
    assert off["rows"][0]["sci"] == off["rows"][0]["sci_windowed"]


def test_a_grid_too_short_for_its_windows_is_refused():
    with pytest.raises(DataError, match="steps"):
        evaluate_regimes(_model(), images=["astronaut"], windows=(101,), num_steps=64)


def test_cli_regimes_refuses_other_scene_options(capsys):
    assert main(["eval", "recon", "--regimes", "--speeds", "0.5", "--quiet"]) != 0
    assert "--regimes" in capsys.readouterr().err


def test_a_model_with_rate_integration_scores_it_beside_the_windowed_model():
    from sci_edge.models.cloud.rate import RateConfig

    torch.manual_seed(0)
    model = SCIModel(SCIConfig(fem=FEMConfig(4, 4, 8, 1),
                               analysis=AnalysisConfig(neighbors=1, stride=5, width=8),
                               rate=RateConfig(enabled=True, width=4))).eval()
    torch.nn.init.constant_(model.rate.mix[-1].bias, 40.0)     # take the long mean
    torch.nn.init.constant_(model.rate.gate[-1].bias, 40.0)    # over the whole stream
    doc = evaluate_regimes(model, images=["astronaut"], gains=(0.5,), speeds=(0.0,),
                           windows=(11, 41), num_steps=64, size=(32, 32))
    row = doc["rows"][0]
    assert doc["rate"] and not doc["propagation"]
    # still: the long mean of the counts beats the untrained windowed model and TFP 41
    assert row["sci"] > row["sci_windowed"] + 3 and row["sci"] > row["tfp41"]
