"""``sci-edge train``: the FEM (stage 1) or an analysis module + head (stage 2)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from . import args as A
from .common import add_json, add_quiet, check_output_file, report


def register(sub) -> None:
    p = sub.add_parser("train", help="train the FEM (stage 1), an analysis module + head "
                                     "(stage 2) or the feature codec (stage 3); needs torch",
                       description="Configs are TOML files; bundled ones: stage1_fem, "
                                   "stage2_recon, stage2_cls (CPU), stage2_recon_gpu_k3, "
                                   "stage2_cls_gpu, stage3_codec, stage3_recon (sci_edge/train/configs). Runs under "
                                   "torchrun for DistributedDataParallel.")
    p.add_argument("--stage", type=int, choices=(1, 2, 3), required=True,
                   help="1: the FEM; 2: analysis module + task head on a trained FEM; "
                        "3: the feature codec (task codec), then the cloud side on its "
                        "decoded features (task recon)")
    p.add_argument("--task", choices=("recon", "cls", "codec"), required=True,
                   help="recon (reconstruction), cls (classification) or codec (stage 3)")
    p.add_argument("--config", required=True, help="TOML file or bundled config name")
    p.add_argument("--out-dir", help="override the config's out_dir")
    p.add_argument("--init", help="override init: the stage-1 checkpoint whose FEM stage 2 "
                                  "uses (stage 1: starts from)")
    p.add_argument("--init-cloud", help="stage 2: start the analysis and head from this "
                                        "stage-2 checkpoint (fine-tuning)")
    p.add_argument("--init-codec", help="stage 3 recon/cls: the trained codec (a stage-3 "
                                        "codec checkpoint) whose cloud side fine-tunes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set laplacian_weight=0.005 "
                        "--set data.size=[96,96] (VALUE in TOML syntax; repeatable)")
    p.add_argument("--steps", type=A.positive_int, help="override optim.steps")
    p.add_argument("--time-budget", type=A.positive_float, metavar="SECONDS",
                   help="override optim.time_budget_s: stop after this long, the learning "
                        "rate decaying over it")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--export-weights", metavar="PATH",
                   help="stage 2/3: also write the final model, without optimizer state, to "
                        "PATH (the shipped files are sci_edge/weights/sci_<task>.pt and "
                        "sci_codec.pt)")
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run)


def run(ns) -> int:
    from .._deps import require

    require("torch", "training")
    from ..train import load_config, train

    overrides = {}
    if ns.out_dir:
        overrides["out_dir"] = ns.out_dir
    if ns.init:
        overrides["init"] = ns.init
    if ns.steps:
        overrides["optim.steps"] = ns.steps
    if ns.time_budget:
        overrides["optim.time_budget_s"] = ns.time_budget
    if ns.init_cloud:
        overrides["init_cloud"] = ns.init_cloud
    if ns.init_codec:
        overrides["init_codec"] = ns.init_codec
    from ..config import parse_sets

    overrides.update(parse_sets(ns.set))
    cfg = load_config(ns.config, overrides)
    if (cfg.stage, cfg.task) != (ns.stage, ns.task):
        raise DataError(f"{ns.config}: the config is for stage {cfg.stage} / {cfg.task}, "
                        f"not stage {ns.stage} / {ns.task}")
    if ns.export_weights:
        if cfg.stage == 1:
            raise DataError("--export-weights takes a full SCI model or a codec: use it "
                            "with stage 2 or 3")
        check_output_file(ns.export_weights)
    result = train(cfg, resume=ns.resume, quiet=ns.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if ns.export_weights:
        from ..train.export import export_weights

        result["exported"] = str(export_weights(Path(cfg.out_dir) / "final.pt",
                                                ns.export_weights))
    doc = {"out_dir": str(cfg.out_dir), **result}
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.items()
                        if k not in ("step", "seconds", "exported") and isinstance(v, float))
    lines = [f"trained stage {cfg.stage} / {cfg.task}: {result.get('step')} steps in "
             f"{result.get('seconds', 0.0):.1f} s -> {cfg.out_dir}/final.pt"]
    if metrics:
        lines.append(f"  {metrics}")
    if "exported" in result:
        lines.append(f"  exported weights: {result['exported']}")
    report(ns, doc, lines)
    return 0
