"""Convert a checkpoint of another layout (official MAE / BootMAE / MixMIM, mmpretrain, teachers) for mim_zoo.

    python tools/convert_checkpoint.py --list                          # every layout, the files each expects
    python tools/convert_checkpoint.py SRC DST --from mae [--config configs/mae/vitb_800e.py] [--check]
    python tools/convert_checkpoint.py --check DST                     # load DST into its model, report the fit
    python tools/train.py configs/mae/vitb_800e.py --cfg-options load_from=DST     # continue training from it
    python tools/export.py DST --to timm --out FILE; python tools/benchmark.py DST  # or evaluate it directly

An algorithm layout's result is a mim_zoo pretraining checkpoint: ``state_dict`` in mim_zoo's keys and, in
``meta['cfg']``, the config it belongs to (``--config``, else the first of its algorithm's paper-size configs in the
catalogue, base then large, whose model takes every tensor), so the export and benchmark tools read it like a
checkpoint of ``tools/train.py``. A teacher layout's
result is a timm state dict for ``TeacherTarget(arch, checkpoint=DST)``.

Official files pickle training arguments (argparse.Namespace), so they are read with ``weights_only=False``:
convert only files you trust. The output loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

import torch  # noqa: E402

import mim_zoo  # noqa: E402,F401  (registers the plugins, applies the compatibility fixes)
from mim_zoo.core.checkpoints import SOURCES, SourceLayout, source_layout  # noqa: E402
from mim_zoo.core.checkpoints.check import check_checkpoint  # noqa: E402
from mim_zoo.core.checkpoints.convert import ConversionResult, convert_checkpoint  # noqa: E402
from mim_zoo.core.checkpoints.export import EXPORTS  # noqa: E402
from mim_zoo.core.checkpoints.read import CheckpointError, checkpoint_problem  # noqa: E402
from mim_zoo.core.targets import is_torchscript, load_checkpoint_file  # noqa: E402
from mim_zoo.engine.catalogue import Catalogue, CatalogueError, load_catalogue  # noqa: E402
from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402
from mim_zoo.engine.compat import load_trusted  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # this checkout: its catalogue (model-index.yml), configs
SCALES = ("base", "large")  # the released official checkpoints' sizes, tried in this order


def paper_configs(layout: SourceLayout, catalogue: Catalogue) -> list[str]:
    """The paper-size configs of the layout's algorithm (the catalogue's, base then large)."""
    configs = []
    for scale in SCALES if layout.algorithm else ():
        try:
            configs.append(osp.relpath(catalogue.path(catalogue.collection(layout.algorithm).model(scale).config)))
        except CatalogueError:  # no config of that size
            continue
    return configs


def becomes(layout: SourceLayout, catalogue: Catalogue) -> str:
    if layout.kind == "teacher":
        return "a timm ViT state dict, for TeacherTarget(arch, checkpoint=DST) or timm's pretrained_cfg_overlay"
    if layout.own_config:
        return "the same checkpoint without its training state, with the config saved in it (or --config)"
    return f"a mim_zoo {layout.algorithm} checkpoint of " + " or ".join(paper_configs(layout, catalogue)) + (
        " (or --config)")


def listing() -> str:
    catalogue = load_catalogue(ROOT)
    lines = ["Source layouts (--from NAME) and the files each expects:"]
    for layout in SOURCES.values():
        lines += [f"  {layout.name:<18} {layout.summary}", f"  {'':<18} files: {layout.files}",
                  f"  {'':<18} becomes: {becomes(layout, catalogue)}"]
        if layout.cfg_options:
            lines.append(f"  {'':<18} recorded with: " + " ".join(f"{k}={v}" for k, v in layout.cfg_options.items()))
    lines.append("Export targets (tools/export.py CKPT --to NAME) and what loads them:")
    lines += [f"  {target.name:<18} {target.loads_with}" for target in EXPORTS.values()]
    return "\n".join(lines)


def read_source(path: str) -> object:
    """The file as ``torch.load`` returns it; a TorchScript archive (OpenAI CLIP) as its state dict."""
    if is_torchscript(path):
        return load_checkpoint_file(path, "source checkpoint")
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(f"{path!r} is not a usable checkpoint: {problem}. Download or copy it again")
    return load_trusted(path)


def convert(src: str, dst: str, layout_name: str, config: str | None) -> ConversionResult:
    if not osp.isfile(src):
        raise FileNotFoundError(f"{src!r} does not exist")
    if config is not None and not osp.isfile(config):
        raise FileNotFoundError(f"config {config!r} does not exist (configs live under configs/<algorithm>/)")
    layout = source_layout(layout_name)
    configs = [config] if config else paper_configs(layout, load_catalogue(ROOT))
    result = convert_checkpoint(read_source(src), layout.name, src, configs)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(result.checkpoint, dst)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = tool_parser(__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="SRC DST", help="source file and output file (or, with --check "
                                                                    "alone, the converted file to check)")
    parser.add_argument("--from", dest="layout", choices=list(SOURCES), metavar="LAYOUT",
                        help=f"layout of SRC, one of: {', '.join(SOURCES)} (--list says what each expects and "
                             "becomes; required to convert)")
    parser.add_argument("--config", help="the mim_zoo config the weights belong to (default: the first paper-size "
                                         "config of the layout's algorithm whose model takes every tensor)")
    parser.add_argument("--check", action="store_true", help="load the converted file into its model and report")
    parser.add_argument("--list", action="store_true", help="list every source layout and export target")
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return
    checking_only = args.check and len(args.paths) == 1 and args.layout is None
    if not checking_only and (len(args.paths) != 2 or args.layout is None):
        parser.error("give SRC DST --from LAYOUT (--list shows the layouts), or --check FILE")
    with one_line_errors(args.debug):
        if not checking_only:
            result = convert(*args.paths, args.layout, args.config)
            where = f" for {result.config}" if result.config else ""
            print(f"wrote {len(result.checkpoint['state_dict'])} tensors ({args.layout} -> mim_zoo{where}) to "
                  f"{args.paths[1]}")
            if result.layout.kind == "algorithm" and result.config:
                options = " ".join(f"{k}={v}" for k, v in result.layout.cfg_options.items())
                print(f"continue with (any config of this architecture): python tools/train.py {result.config} "
                      f"--cfg-options load_from={args.paths[1]} {options}".rstrip())
        if args.check:
            report = check_checkpoint(args.paths[-1])
            print(report.summary())
            if not report.ok:
                sys.exit(f"error: {args.paths[-1]} does not fit its model (see above)")


if __name__ == "__main__":
    main()
