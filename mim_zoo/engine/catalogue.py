"""The zoo's catalogue: which algorithms and combos, which configs, which downstream recipes, which published numbers.

The tests, ``benchmarks/``, ``tools/`` and the README tables ask these questions here and nowhere else. The answers
are written once, in a metafile per algorithm (``configs/<algo>/metafile.yml``) and per combo
(``configs/combos/<name>/metafile.yml``) in OpenMMLab's convention (as mmpretrain's ``configs/mae/metafile.yml``),
imported by the repository's ``model-index.yml``. Its ``Import`` entries may hold wildcards, as the model-index format
allows (paperswithcode/model-index@09c7865 ``modelindex/models/ModelIndex.py``), so a new algorithm's metafile is
found without editing the index.

A metafile holds one ``Collection`` and its ``Models``; paths are relative to the repository root:

* the Collection: ``Name`` (an algorithm: its name in ``mim_zoo.registry.MODELS``; a combo: its folder),
  ``Paper`` (``Title``, ``URL``, ``Authors``, ``Year``) and ``Code`` (``URL``, ``Version``) for an algorithm, and
  ``Metadata``: ``Architecture``, ``Encoder Layout`` (the layout its encoder exports: ``timm``, ``mmpretrain``),
  ``Target`` and ``Masking`` (prose), for a combo ``Algorithm`` (the registered algorithm its configs build) and
  ``Combination`` (prose);
* a pretraining Model: ``Config`` (absent for a published setting without a config of its own), ``Metadata``
  (``Encoder``, ``Scale``: base / large / tiny, ``Epochs``, ``Batch Size`` (the paper's total), ``Training Data``,
  optionally ``Strategy`` (FSDP, DeepSpeed) or ``Variant`` (prose)) and ``Results``: the published numbers, each
  ``{Task, Metrics: {name: value}, Source}`` (``Task`` a key of :data:`TASKS`, metric names as there);
* a downstream recipe (a Model whose Metadata has ``Task``): ``Config`` and ``Metadata``: ``Task``, ``Encoder
  Layout`` (the encoders it loads), then ``Reference: true`` (the recipe every method of that layout gets under
  ``--protocol common``, and where its paper publishes none), ``CPU Twin Of: <recipe>`` (the tiny twin of a
  reference recipe), ``Variant`` (prose: never chosen automatically), or none of these (the collection's own
  recipe for that task, chosen under ``--protocol paper``), and an optional ``Summary``.

What the code states already is not repeated: the parts an algorithm is defined with are its ``default_parts``
(:class:`mim_zoo.core.algorithms.BaseMIM`), and the contents of a config are the config's. Nor is what is measured:
FLOPs, parameters and speed per config are ``benchmarks/throughput.py``'s (``benchmarks/results/``). The tests check
that the metafiles agree with the configs and the registry and that every config on disk is listed.

The module belongs to the engine: it describes runs (configs, downstream recipes, evaluator keys), not models, and
imports nothing from the package, so any tier above the core, the tools and the tests can ask it.

Where the catalogue is: :func:`load_catalogue` reads ``ROOT/model-index.yml``, ``ROOT`` being its argument, else
``$MIM_ZOO_ROOT``, else the current directory. The package never derives it from its own location. From a clone's
root (where the configs' relative data paths resolve too) everything works, installed editable or not; tools pass
their checkout's root. (mmengine's ``pkg::`` lookup through ``<pkg>/.mim/`` does not fit: for an editable install
``mmengine.utils.get_installed_path`` returns ``site-packages/<pkg>``, which does not exist.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INDEX_FILE = "model-index.yml"
ROOT_VARIABLE = "MIM_ZOO_ROOT"
SCALES = ("base", "large", "tiny")
PROTOCOLS = ("paper", "common")


@dataclass(frozen=True)
class Metric:
    """One reported number of a task: its results column, its name in a metafile, the evaluator's key and scale."""

    column: str
    name: str
    key: str
    scale: float


@dataclass(frozen=True)
class Task:
    """One downstream benchmark (``tools/benchmark.py --tasks``) and the numbers it reports."""

    dataset: str
    metrics: tuple[Metric, ...]


TASKS = {
    "linear": Task("ImageNet-1k", (Metric("linear_top1", "Top 1 Accuracy", "accuracy/top1", 1.0),)),
    "finetune": Task("ImageNet-1k", (Metric("finetune_top1", "Top 1 Accuracy", "accuracy/top1", 1.0),)),
    "ade20k": Task("ADE20K", (Metric("ade20k_miou", "mIoU", "mIoU", 1.0),)),
    "coco": Task("COCO", (Metric("coco_box_ap", "box AP", "coco/bbox_mAP", 100.0),
                          Metric("coco_mask_ap", "mask AP", "coco/segm_mAP", 100.0))),
    # the linear probe of every depth (mim_zoo/engine/depth_probe.py); the row holds its best layer's top-1
    "depth_probe": Task("ImageNet-1k", (Metric("depth_probe_top1", "Best Top 1 Accuracy", "depth_probe/best_top1",
                                               1.0),)),
}


class CatalogueError(ValueError):
    """A metafile or the model index is malformed, or a query names something the catalogue does not hold."""


@dataclass(frozen=True)
class Result:
    """A published number set: ``{column: value}`` of one task (``{"coco_box_ap": 50.3, "coco_mask_ap": 44.9}``)."""

    task: str
    metrics: dict[str, float]
    source: str


@dataclass(frozen=True)
class Pretraining:
    """A pretraining setting: its config (``None``: published, no config here), size, schedule and paper numbers."""

    name: str
    collection: str
    config: str | None
    encoder: str
    scale: str
    epochs: int
    batch_size: int | None
    training_data: str
    strategy: str | None = None
    variant: str | None = None
    results: tuple[Result, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A downstream benchmark config and the encoders and protocol it serves (module docstring)."""

    name: str
    collection: str
    config: str
    task: str
    layout: str
    reference: bool = False
    twin_of: str | None = None
    variant: str | None = None
    summary: str | None = None


@dataclass(frozen=True)
class Collection:
    """An algorithm (``algorithm == name``) or a combo (a registered ``algorithm`` with other parts)."""

    name: str
    algorithm: str
    metafile: str
    architecture: str
    layout: str
    paper: dict[str, Any] | None
    code: dict[str, Any] | None
    target: str | None
    masking: str | None
    combination: str | None
    models: tuple[Pretraining, ...]
    recipes: tuple[Recipe, ...]

    @property
    def is_combo(self) -> bool:
        return self.combination is not None

    def model(self, scale: str) -> Pretraining:
        """The collection's config at ``scale`` (``"base"``: the paper-size one with the fewest epochs, without a
        strategy or variant; ``"tiny"``: the CPU config)."""
        found = [m for m in self.models if m.scale == scale and m.config and not (m.strategy or m.variant)]
        if not found:
            raise CatalogueError(f"{self.metafile} lists no {scale} config of {self.name} (a Model with "
                                 f"'Scale: {scale}' and a Config)")
        return min(found, key=lambda m: m.epochs)


class Catalogue:
    """Everything the metafiles under ``root`` say, with the queries the rest of the code asks."""

    def __init__(self, root: Path, collections: dict[str, Collection]) -> None:
        self.root = root
        self.collections = collections

    def path(self, relative: str) -> Path:
        """A catalogue path (``configs/mae/vitb_800e.py``) under the root."""
        return self.root / relative

    def algorithms(self) -> list[str]:
        """The algorithms, sorted (``["BootMAE", "MAE", "MRMAE", "MixMAE"]``)."""
        return sorted(n for n, c in self.collections.items() if not c.is_combo)

    def combos(self) -> list[str]:
        """The combinations of registered parts no paper trained, sorted (``["mae_blockmask", ...]``)."""
        return sorted(n for n, c in self.collections.items() if c.is_combo)

    def collection(self, name: str) -> Collection:
        if name not in self.collections:
            raise CatalogueError(f"{name!r} is neither an algorithm nor a combo of the catalogue; algorithms: "
                                 f"{', '.join(self.algorithms())}; combos: {', '.join(self.combos())}")
        return self.collections[name]

    def tiny_config(self, name: str) -> Path:
        """The CPU config of an algorithm or combo (every one ships one, STYLE R21)."""
        return self.path(self.collection(name).model("tiny").config)

    def paper_config(self, name: str) -> Path:
        """The paper-size config of an algorithm or combo: base size, the fewest epochs (the architecture does not
        depend on the schedule), no strategy or variant."""
        return self.path(self.collection(name).model("base").config)

    def pretraining(self, combos: bool = True) -> list[Pretraining]:
        """Every pretraining setting with a config (algorithms first, then combos if asked), in metafile order."""
        names = self.algorithms() + (self.combos() if combos else [])
        return [m for n in names for m in self.collections[n].models if m.config]

    def configs(self, scale: str | None = None, combos: bool = True) -> list[Path]:
        """The pretraining configs (of one ``scale`` if given)."""
        return [self.path(m.config) for m in self.pretraining(combos) if scale in (None, m.scale)]

    def recipes(self) -> list[Recipe]:
        """Every downstream recipe, CPU twins included."""
        return [r for c in self.collections.values() for r in c.recipes]

    def recipe(self, task: str, method: str, layout: str, protocol: str = "paper", tiny: bool = False) -> Recipe:
        """The downstream recipe of ``task`` for a checkpoint of ``method`` whose encoder exports ``layout``.

        ``protocol="paper"``: the method's own recipe where its metafile lists one, else the layout's reference;
        ``"common"``: the layout's reference for every method (like-for-like rows). ``tiny=True``: the CPU twin of
        the reference (the protocol does not apply). Any method is served, a project's included.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'paper' (each method's recipe) or 'common' (its encoder family's "
                             f"reference recipe), got {protocol!r}")
        candidates = [r for r in self.recipes() if r.task == task and r.layout == layout and not r.variant]
        if tiny:
            found = [r for r in candidates if r.twin_of]
        else:
            own = [r for r in candidates if protocol == "paper" and r.collection == method and not r.twin_of]
            found = own or [r for r in candidates if r.reference]
        if not found:
            kind = "CPU twins" if tiny else "benchmark recipes"
            layouts = sorted({r.layout for r in self.recipes() if r.reference})
            raise ValueError(f"no {kind} for encoders in the {layout!r} layout (there are for "
                             f"{', '.join(layouts)})")
        return found[0]

    def results(self) -> Iterator[tuple[Collection, Pretraining]]:
        """Every pretraining setting with published numbers, algorithm by algorithm."""
        for name in self.algorithms():
            collection = self.collections[name]
            yield from ((collection, m) for m in collection.models if m.results)


def default_root() -> Path:
    """``$MIM_ZOO_ROOT``, else the current directory."""
    return Path(os.environ.get(ROOT_VARIABLE) or os.getcwd())


def load_catalogue(root: str | os.PathLike | None = None) -> Catalogue:
    """The catalogue of ``root`` (default :func:`default_root`), checked (:func:`check_catalogue`)."""
    root = Path(root or default_root()).resolve()
    index = root / INDEX_FILE
    if not index.is_file():
        raise CatalogueError(f"no {INDEX_FILE} in {root}: run from the root of a mim_zoo checkout, set "
                             f"{ROOT_VARIABLE} to it, or pass its path")
    collections: dict[str, Collection] = {}
    for metafile in metafiles(root, _read_yaml(index)):
        collection = parse_metafile(root, metafile)
        if collection.name in collections:
            raise CatalogueError(f"{metafile}: collection {collection.name!r} is also in "
                                 f"{collections[collection.name].metafile}")
        collections[collection.name] = collection
    check_catalogue(collections)
    return Catalogue(root, collections)


def metafiles(root: Path, index: dict) -> list[str]:
    """The metafiles the index imports (wildcards expanded, sorted), relative to ``root``."""
    found: list[str] = []
    for pattern in index.get("Import") or []:
        matches = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
        if not matches:
            raise CatalogueError(f"{INDEX_FILE}: Import {pattern!r} matches no file")
        found += [m for m in matches if m not in found]
    return found


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CatalogueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise CatalogueError(f"{path} must hold a mapping (Collections / Models / Import)")
    return data


# --- one metafile --------------------------------------------------------------------------------------------------
def parse_metafile(root: Path, metafile: str) -> Collection:
    """The one Collection of ``metafile`` with its Models (errors name the file and the entry)."""
    data = _read_yaml(root / metafile)
    entries = data.get("Collections") or []
    if len(entries) != 1:
        raise CatalogueError(f"{metafile}: expected exactly one entry under Collections, got {len(entries)}")
    entry = entries[0]
    name, meta = _required(entry, "Name", metafile), entry.get("Metadata") or {}
    combination = meta.get("Combination")
    if combination is None and "Paper" not in entry:
        raise CatalogueError(f"{metafile}: algorithm {name!r} names no Paper (Title, URL, Authors, Year)")
    models, recipes = [], []
    for model in data.get("Models") or []:
        where = f"{metafile}: model {model.get('Name')!r}"
        if model.get("In Collection") != name:
            raise CatalogueError(f"{where}: 'In Collection' must be {name!r}, the collection of this metafile")
        if model.get("Config") and not (root / model["Config"]).is_file():
            raise CatalogueError(f"{where}: Config {model['Config']} does not exist")
        is_recipe = "Task" in (model.get("Metadata") or {})
        (recipes if is_recipe else models).append((_recipe if is_recipe else _pretraining)(model, name, where))
    return Collection(
        name=name, algorithm=meta.get("Algorithm", name), metafile=metafile,
        architecture=", ".join(_required(meta, "Architecture", metafile)),
        layout=_required(meta, "Encoder Layout", metafile), paper=entry.get("Paper"), code=entry.get("Code"),
        target=meta.get("Target"), masking=meta.get("Masking"), combination=combination, models=tuple(models),
        recipes=tuple(recipes),
    )


def _pretraining(model: dict, collection: str, where: str) -> Pretraining:
    meta = model.get("Metadata") or {}
    scale = _required(meta, "Scale", where)
    if scale not in SCALES:
        raise CatalogueError(f"{where}: Scale must be one of {', '.join(SCALES)}, got {scale!r}")
    return Pretraining(
        name=_required(model, "Name", where), collection=collection, config=model.get("Config"),
        encoder=_required(meta, "Encoder", where), scale=scale, epochs=int(_required(meta, "Epochs", where)),
        batch_size=meta.get("Batch Size"), training_data=_required(meta, "Training Data", where),
        strategy=meta.get("Strategy"), variant=meta.get("Variant"),
        results=tuple(_result(r, f"{where}, result {i}") for i, r in enumerate(model.get("Results") or [])),
    )


def _result(entry: dict, where: str) -> Result:
    task = _required(entry, "Task", where)
    if task not in TASKS:
        raise CatalogueError(f"{where}: unknown Task {task!r}; choose from {', '.join(TASKS)}")
    names = {m.name: m.column for m in TASKS[task].metrics}
    metrics = _required(entry, "Metrics", where)
    unknown = sorted(set(metrics) - set(names))
    if unknown:
        raise CatalogueError(f"{where}: {task} reports {', '.join(names)}, not {', '.join(unknown)}")
    return Result(task, {names[k]: float(v) for k, v in metrics.items()}, _required(entry, "Source", where))


def _recipe(model: dict, collection: str, where: str) -> Recipe:
    meta = model["Metadata"]
    task = meta["Task"]
    if task not in TASKS:
        raise CatalogueError(f"{where}: unknown Task {task!r}; choose from {', '.join(TASKS)}")
    roles = [key for key in ("Reference", "CPU Twin Of", "Variant") if meta.get(key)]
    if len(roles) > 1:
        raise CatalogueError(f"{where}: a recipe is at most one of Reference, CPU Twin Of, Variant; got {roles}")
    return Recipe(name=_required(model, "Name", where), collection=collection, config=_required(model, "Config", where),
                  task=task, layout=_required(meta, "Encoder Layout", where), reference=bool(meta.get("Reference")),
                  twin_of=meta.get("CPU Twin Of"), variant=meta.get("Variant"), summary=meta.get("Summary"))


def _required(entry: dict, key: str, where: str) -> Any:
    if entry.get(key) in (None, "", []):
        raise CatalogueError(f"{where}: '{key}' is missing")
    return entry[key]


# --- the whole catalogue -------------------------------------------------------------------------------------------
def check_catalogue(collections: dict[str, Collection]) -> None:
    """Rules across metafiles: unique names, one tiny and one paper-size config per collection, combos built on an
    algorithm, one reference recipe and one CPU twin (of it) per encoder layout and task."""
    names: dict[str, str] = {}
    for collection in collections.values():
        for entry in (*collection.models, *collection.recipes):
            if entry.name in names:
                raise CatalogueError(f"model name {entry.name!r} is in {names[entry.name]} and {collection.metafile}")
            names[entry.name] = collection.metafile
        for scale in ("tiny", "base"):
            collection.model(scale)
        if collection.is_combo and collections.get(collection.algorithm, collection).is_combo:
            raise CatalogueError(f"{collection.metafile}: combo {collection.name!r} must name the algorithm its "
                                 f"configs build ('Algorithm'), got {collection.algorithm!r}")
    recipes = {r.name: r for c in collections.values() for r in c.recipes}
    seen: dict[tuple[str, str, str], str] = {}
    for recipe in recipes.values():
        if recipe.twin_of:
            base = recipes.get(recipe.twin_of)
            if base is None or not base.reference or (base.task, base.layout) != (recipe.task, recipe.layout):
                raise CatalogueError(f"recipe {recipe.name!r}: 'CPU Twin Of' must name the reference recipe of "
                                     f"{recipe.task} for the {recipe.layout} layout, got {recipe.twin_of!r}")
        if recipe.variant:
            continue
        # one reference and one twin per (task, layout); one own recipe per (collection, task, layout)
        role = "reference" if recipe.reference else "CPU twin" if recipe.twin_of else f"{recipe.collection}'s own"
        key = (role, recipe.task, recipe.layout)
        if seen.setdefault(key, recipe.name) != recipe.name:
            raise CatalogueError(f"two {role} recipes of {recipe.task} for the {recipe.layout} layout: "
                                 f"{seen[key]!r} and {recipe.name!r} (mark all but one with 'Variant')")


# --- READMEs that show the catalogue ------------------------------------------------------------------------------
def readme_section(text: str, name: str) -> str:
    """What lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``text``, stripped."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"no section {start} ... {end} to read or update")
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def replace_readme_section(readme: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``readme`` with ``text``."""
    content = readme.read_text()
    try:
        readme_section(content, name)
    except ValueError as err:
        raise ValueError(f"{readme} has {err}") from None
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, rest = content.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")
