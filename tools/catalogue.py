"""What the zoo holds, from its catalogue (model-index.yml and the metafiles): algorithms, combos, configs, recipes.

    python tools/catalogue.py                  # print it
    python tools/catalogue.py --update-readme  # rewrite the tables of README.md and configs/benchmarks/README.md
    python tools/catalogue.py --check          # exit 1 if a README table disagrees with the catalogue

The README tables that list algorithms, combos, configs and downstream recipes are generated here, between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers; tests/test_catalogue.py checks that they agree.
"""

from __future__ import annotations

import os.path as osp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # this checkout: its catalogue and READMEs
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from mim_zoo.engine.catalogue import (  # noqa: E402
    TASKS,
    Catalogue,
    Collection,
    Recipe,
    load_catalogue,
    readme_section,
    replace_readme_section,
)
from mim_zoo.engine.cli import one_line_errors, tool_parser  # noqa: E402

README = "README.md"
BENCHMARKS_README = "configs/benchmarks/README.md"


def _files(paths: list[str]) -> str:
    """``configs/mae/{vitb_800e,vitl_800e}.py``: paths of one folder, written once."""
    folders = {osp.dirname(p) for p in paths}
    if len(folders) != 1 or len(paths) == 1:
        return ", ".join(f"`{p}`" for p in paths)
    stems = ",".join(osp.splitext(osp.basename(p))[0] for p in paths)
    return f"`{folders.pop()}/{{{stems}}}.py`"


def _configs(collection: Collection) -> str:
    """The paper-size configs (not the strategy variants: README "Scale"), then the CPU one."""
    paper = [m.config for m in collection.models if m.config and m.scale != "tiny" and not m.strategy]
    tiny = collection.model("tiny").config
    same_folder = osp.dirname(tiny) == osp.dirname(paper[0])
    return f"{_files(paper)}, `{osp.basename(tiny) if same_folder else tiny}`"


def _paper(collection: Collection) -> str:
    paper, code = collection.paper, collection.code
    cite = f"[{paper['Authors']} {paper['Year']}]({paper['URL']})"
    if not code:
        return f"{cite}, no official code"
    repo = code["URL"].removeprefix("https://github.com/")
    return f"{cite}, [{repo}]({code['URL']})@{code['Version']}"


def zoo_table(catalogue: Catalogue) -> str:
    """README.md "What is inside": one row per algorithm."""
    lines = ["| algorithm | paper | configs (paper size / CPU) | encoder -> exports to | target | masking |",
             "|---|---|---|---|---|---|"]
    for name in catalogue.algorithms():
        c = catalogue.collection(name)
        lines.append(f"| `{name}` | {_paper(c)} | {_configs(c)} | {c.architecture} -> {c.layout} | {c.target} | "
                     f"{c.masking} |")
    return "\n".join(lines)


def combos_table(catalogue: Catalogue) -> str:
    """README.md: one row per combo."""
    lines = ["| combo | what it is | configs (paper size / CPU) |", "|---|---|---|"]
    for name in catalogue.combos():
        c = catalogue.collection(name)
        lines.append(f"| `{name}` | {c.combination} | {_configs(c)} |")
    return "\n".join(lines)


def _chosen_for(recipe: Recipe) -> str:
    if recipe.variant:
        return f"by hand: {recipe.variant}"
    if recipe.reference:
        return f"the `{recipe.layout}` reference: `common` for all, `paper` for methods without their own"
    return f"`paper` for {recipe.collection}"


def recipes_table(catalogue: Catalogue) -> str:
    """configs/benchmarks/README.md "Recipes": every full-size recipe, which method's it is and when it is chosen."""
    lines = ["| task | config (`configs/benchmarks/`) | recipe of | chosen (`--protocol`) | notes |",
             "|---|---|---|---|---|"]
    recipes = [r for r in catalogue.recipes() if not r.twin_of]
    for r in sorted(recipes, key=lambda r: (r.layout != "timm", r.layout, list(TASKS).index(r.task), r.name)):
        lines.append(f"| {r.task} | {_benchmark_config(r.config)} | {r.collection} | {_chosen_for(r)} | "
                     f"{r.summary or ''} |")
    return "\n".join(lines)


def twins_table(catalogue: Catalogue) -> str:
    """configs/benchmarks/README.md "CPU twins": the twin of each layout's reference recipe, per task."""
    twins = {(r.layout, r.task): r.config for r in catalogue.recipes() if r.twin_of}
    lines = ["| encoder layout | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for layout in sorted({layout for layout, _ in twins}, key=lambda layout: (layout != "timm", layout)):
        cells = [twins.get((layout, task), "") for task in TASKS]
        lines.append(f"| `{layout}` | " + " | ".join(_benchmark_config(c) for c in cells) + " |")
    return "\n".join(lines)


def _benchmark_config(path: str) -> str:
    return f"`{path.removeprefix('configs/benchmarks/').removesuffix('.py')}`" if path else "—"


def readme_sections(catalogue: Catalogue) -> dict[tuple[str, str], str]:
    """``{(README path, section name): generated text}``."""
    return {(README, "zoo"): zoo_table(catalogue), (README, "combos"): combos_table(catalogue),
            (BENCHMARKS_README, "recipes"): recipes_table(catalogue),
            (BENCHMARKS_README, "twins"): twins_table(catalogue)}


def outdated_sections(catalogue: Catalogue) -> list[str]:
    """``README.md#zoo``-style names of the sections whose text is not what the catalogue gives (a README without
    the section's markers is an error)."""
    return [f"{path}#{name}" for (path, name), text in readme_sections(catalogue).items()
            if readme_section((catalogue.root / path).read_text(), name) != text.strip()]


def summary(catalogue: Catalogue) -> str:
    lines = []
    for name in catalogue.algorithms() + catalogue.combos():
        c = catalogue.collection(name)
        kind = f"combo of {c.algorithm}: {c.combination}" if c.is_combo else c.paper["Title"]
        lines.append(f"{name} ({kind})")
        lines += [f"  {m.scale:5s} {m.config}" for m in c.models if m.config]
    lines.append("downstream recipes:")
    lines += [f"  {r.task:8s} {r.layout:10s} {r.collection:8s} {r.config}" for r in catalogue.recipes()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser(__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--update-readme", action="store_true", help="rewrite the generated README tables")
    action.add_argument("--check", action="store_true", help="exit 1 if a generated README table is out of date")
    args = parser.parse_args(argv)
    with one_line_errors(args.debug):
        catalogue = load_catalogue(ROOT)
        if args.update_readme:
            for (path, name), text in readme_sections(catalogue).items():
                replace_readme_section(ROOT / path, name, text)
            return 0
        if args.check:
            outdated = outdated_sections(catalogue)
            if outdated:
                print(f"out of date: {', '.join(outdated)}; run python tools/catalogue.py --update-readme",
                      file=sys.stderr)
            return int(bool(outdated))
        print(summary(catalogue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
