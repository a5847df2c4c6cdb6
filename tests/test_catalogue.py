"""mim_zoo.engine.catalogue: the metafiles agree with the registry, the configs on disk and the READMEs; queries and
the errors of malformed metafiles; where the catalogue is found."""

from __future__ import annotations

import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest
from mmengine.config import Config

from mim_zoo.engine.catalogue import CatalogueError, load_catalogue, readme_section
from mim_zoo.engine.recipe import resolve_recipe
from mim_zoo.registry import MODELS

from .conftest import CATALOGUE, REPO, registered_algorithms


def package_algorithms() -> set[str]:
    """The package's algorithms in the registry (a project's, registered by a config's custom_imports, excluded)."""
    return {name for name in registered_algorithms() if MODELS.get(name).__module__.startswith("mim_zoo.")}


def config_class(type_: object) -> type:
    """The class of a config ``type``: pure-Python configs hold the class itself, others its registered name."""
    return type_ if isinstance(type_, type) else MODELS.get(str(type_).rsplit(".", 1)[-1])


def test_the_catalogue_lists_exactly_the_registered_algorithms():
    assert set(CATALOGUE.algorithms()) == package_algorithms(), (
        "every algorithm of mim_zoo needs configs/<algo>/metafile.yml (README: 'Add your own MIM variant')")
    assert {"MAE", "BootMAE", "MRMAE", "MixMAE"} <= set(CATALOGUE.algorithms())
    for name in CATALOGUE.combos():  # a combo swaps parts of a registered algorithm
        assert CATALOGUE.collection(name).algorithm in package_algorithms()


def test_every_config_on_disk_is_in_the_catalogue():
    listed = {m.config for m in CATALOGUE.pretraining()} | {r.config for r in CATALOGUE.recipes()}
    on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts}
    assert on_disk - listed == set(), "configs no metafile lists: add a Model for each to its folder's metafile.yml"


@pytest.mark.parametrize("model", CATALOGUE.pretraining(), ids=lambda m: m.name)
def test_metafile_agrees_with_the_config(model):
    cfg = Config.fromfile(str(CATALOGUE.path(model.config)))
    collection = CATALOGUE.collection(model.collection)
    assert config_class(cfg.model.type).__name__ == collection.algorithm
    assert config_class(cfg.model.encoder.type).canonical == collection.layout
    official = resolve_recipe(cfg, world_size=cfg.recipe.num_gpus)  # the recipe at the paper's own launch
    assert cfg.train_cfg.max_epochs == model.epochs and official.total_batch == model.batch_size
    assert ("strategy" in cfg) == (model.strategy is not None)


def test_recipes_resolve_by_method_layout_and_protocol():
    def pick(task, method, layout="timm", **kwargs):
        return CATALOGUE.recipe(task, method, layout, **kwargs).name

    assert pick("linear", "BootMAE") == "linear_vit-b16_bootmae-pre_8xb1024x2-lars-coslr-90e_in1k"  # its own
    assert pick("linear", "BootMAE", protocol="common") == "linear_vit-b16_mae-pre_8xb2048-lars-coslr-90e_in1k"
    assert pick("coco", "BootMAE") == "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco"  # none of its own
    assert pick("coco", "MAE") == "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco"  # the 25e is a variant
    assert pick("coco", "NewViTMethod") == "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco"
    assert pick("coco", "MixMAE", "mmpretrain", tiny=True) == "det_mask-rcnn_mixmim-fpn_tiny_cpu"
    assert pick("ade20k", "BootMAE", tiny=True) == "seg_upernet_vit_tiny_cpu"  # twins ignore the protocol
    with pytest.raises(ValueError, match="protocol must be"):
        pick("linear", "MAE", protocol="ours")


def test_paper_numbers_are_tied_to_their_setting():
    mrmae = {m.epochs: m for m in CATALOGUE.collection("MRMAE").models if m.results}
    assert mrmae[200].config is None and mrmae[200].results[0].metrics == {"finetune_top1": 85.0}
    assert mrmae[400].config == "configs/mrmae/vitb_400e.py"
    assert all(r.source for _, m in CATALOGUE.results() for r in m.results)


def test_readme_tables_agree_with_the_catalogue():
    spec = importlib.util.spec_from_file_location("mim_zoo_tools_catalogue", REPO / "tools" / "catalogue.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for (path, name), text in tool.readme_sections(CATALOGUE).items():
        assert readme_section((REPO / path).read_text(), name) == text.strip(), (
            f"{path} ({name}) is out of date: run python tools/catalogue.py --update-readme")
    assert "| `MAE` | [He et al. 2022](https://arxiv.org/abs/2111.06377)" in tool.zoo_table(CATALOGUE)


# --- where the catalogue is ------------------------------------------------------------------------------------------
def test_root_is_the_argument_then_the_environment_then_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIM_ZOO_ROOT", raising=False)
    with pytest.raises(CatalogueError, match=r"no model-index.yml in .*: run from the root of a mim_zoo checkout, "
                                             r"set MIM_ZOO_ROOT"):
        load_catalogue()
    assert load_catalogue(REPO).algorithms() == CATALOGUE.algorithms()
    monkeypatch.setenv("MIM_ZOO_ROOT", str(REPO))
    assert load_catalogue().root == REPO.resolve()
    monkeypatch.delenv("MIM_ZOO_ROOT")
    monkeypatch.chdir(REPO)
    assert load_catalogue().root == REPO.resolve()


# --- malformed metafiles are clear errors ----------------------------------------------------------------------------
@pytest.fixture
def copy_of_the_catalogue(tmp_path) -> Path:
    """The index and the metafiles in a fresh root, with empty files for the configs they name."""
    for path in [REPO / "model-index.yml", *(REPO / "configs").rglob("metafile.yml")]:
        (tmp_path / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / path.relative_to(REPO))
    for config in [m.config for m in CATALOGUE.pretraining()] + [r.config for r in CATALOGUE.recipes()]:
        (tmp_path / config).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / config).touch()
    return tmp_path


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_copy_loads_and_finds_a_new_metafile_without_editing_the_index(copy_of_the_catalogue):
    root = copy_of_the_catalogue
    assert load_catalogue(root).algorithms() == CATALOGUE.algorithms()
    (root / "configs/newmim").mkdir()
    for name in ("vitb_800e.py", "tiny_cpu.py"):
        (root / "configs/newmim" / name).touch()
    (root / "configs/newmim/metafile.yml").write_text(textwrap.dedent("""\
        Collections:
          - Name: NewMIM
            Metadata: {Architecture: [ViT], Encoder Layout: timm}
            Paper: {Title: A new method, URL: https://arxiv.org/abs/0000.00000, Authors: A et al., Year: 2026}
        Models:
          - Name: newmim_vitb_800e
            In Collection: NewMIM
            Config: configs/newmim/vitb_800e.py
            Metadata: {Encoder: ViT-B/16, Scale: base, Epochs: 800, Batch Size: 4096, Training Data: ImageNet-1k}
          - Name: newmim_tiny_cpu
            In Collection: NewMIM
            Config: configs/newmim/tiny_cpu.py
            Metadata: {Encoder: tiny ViT, Scale: tiny, Epochs: 2, Batch Size: 16, Training Data: shapes}
        """))
    catalogue = load_catalogue(root)
    assert "NewMIM" in catalogue.algorithms() and catalogue.tiny_config("NewMIM") == root / "configs/newmim/tiny_cpu.py"
    assert catalogue.recipe("coco", "NewMIM", "timm").name == "det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco"


@pytest.mark.parametrize("metafile, old, new, message", [
    ("configs/mae/metafile.yml", "Scale: tiny", "Scale: small", "Scale must be one of base, large, tiny"),
    ("configs/mae/metafile.yml", "Config: configs/mae/tiny_cpu.py", "Config: configs/mae/nope.py",
     "Config configs/mae/nope.py does not exist"),
    ("configs/mae/metafile.yml", "{Task: ade20k, Metrics: {mIoU: 48.1}", "{Task: ade20k, Metrics: {mAP: 48.1}",
     "ade20k reports mIoU, not mAP"),
    ("configs/mae/metafile.yml", "CPU Twin Of: linear_vit-b16_mae-pre", "CPU Twin Of: linear_vit-b16_bootmae-pre",
     "'CPU Twin Of' must name the reference recipe of linear for the timm layout"),
    ("configs/bootmae/metafile.yml", "Metadata: {Task: linear, Encoder Layout: timm,",
     "Metadata: {Task: linear, Encoder Layout: timm, Reference: true,", "two reference recipes of linear"),
    ("configs/mrmae/metafile.yml", "  - Name: mrmae_tiny_cpu", "  - Name: mae_tiny_cpu", "model name 'mae_tiny_cpu'"),
    ("configs/mrmae/metafile.yml", "Scale: tiny", "Scale: large", "lists no tiny config of MRMAE"),
    ("configs/mixmae/metafile.yml", "    In Collection: MixMAE\n", "    In Collection: MixMIM\n",
     "'In Collection' must be 'MixMAE'"),
    ("configs/mixmae/metafile.yml", "    Paper:", "    Article:", "algorithm 'MixMAE' names no Paper"),
    ("configs/combos/mae_momentum/metafile.yml", "Algorithm: MAE", "Algorithm: mae_blockmask",
     "must name the algorithm its configs build"),
    ("model-index.yml", "configs/combos/*/metafile.yml", "configs/combo/*/metafile.yml", "matches no file"),
])
def test_a_malformed_metafile_is_an_error_naming_it(copy_of_the_catalogue, metafile, old, new, message):
    _rewrite(copy_of_the_catalogue / metafile, old, new)
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_catalogue(copy_of_the_catalogue)


def test_unknown_names_list_what_there_is():
    with pytest.raises(CatalogueError, match=r"'SimMIM' is neither .*; algorithms: .*MAE.*; combos: .*mae_blockmask"):
        CATALOGUE.tiny_config("SimMIM")
    with pytest.raises(ValueError, match="unknown task 'kitti'"):
        CATALOGUE.recipe("kitti", "MAE", "timm")
