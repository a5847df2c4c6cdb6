"""The model core: what the papers describe, and nothing that runs it.

Registry and plugin contracts, token utilities, encoder adapters, mask generators, targets, losses, schedules and the
algorithms, plus reading, converting and exporting checkpoints and the encoder adapters of the downstream toolboxes.
Nothing here imports :mod:`mim_zoo.engine` or :mod:`mim_zoo.synthetic`. Importing this package imports no plugin:
the registries import their modules on first use (:mod:`mim_zoo.core.registry`).
"""
