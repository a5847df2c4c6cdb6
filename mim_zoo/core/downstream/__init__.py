"""Downstream benchmarks from one pretraining checkpoint: ImageNet (mmpretrain), ADE20K (mmseg), COCO (mmdet).

Light on import: the library adapters register themselves when their module is imported, which the benchmark
configs do through ``custom_imports``:

* :mod:`.mmpretrain`: ``MIMVisionTransformer``, ``MIMMixMIMTransformer`` (linear probe, fine-tune);
* :mod:`.mmseg`: ``MIMBEiT``, ``MIMMixMIMPyramid`` (UperNet);
* :mod:`.mmdet`: ``ViTDetBackbone`` + ``SimpleFeaturePyramid``, ``MIMMixMIMPyramid`` (Mask R-CNN).

The library-free parts: :mod:`.checkpoint` (read a pretraining checkpoint, rebuild and load its encoder),
:mod:`.convert` (canonical -> library layouts), :mod:`.pos_embed`, :mod:`.loading` (checked initialisation),
:mod:`.export` (``tools/export.py``) and :mod:`.benchmark` (``tools/benchmark.py``).
"""

from ..checkpoints.read import CheckpointError, PretrainedEncoder, load_pretrained_encoder

__all__ = ["CheckpointError", "PretrainedEncoder", "load_pretrained_encoder"]
