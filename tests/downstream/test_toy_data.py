"""mim_zoo.synthetic.toy_data: the toy ADE20K / COCO files are what mmseg's and mmdet's real readers and
evaluators expect: ground truth scored as a prediction gets a perfect score, and labels agree with the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from mmengine.registry import DefaultScope

import mim_zoo  # noqa: F401
from mim_zoo.synthetic.toy_data import make_toy_ade20k, make_toy_coco, make_toy_dataset


@pytest.fixture(scope="module")
def toy_ade(tmp_path_factory):
    return make_toy_ade20k(tmp_path_factory.mktemp("ade"), num_train=6, num_val=4, size=64)


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory):
    return make_toy_coco(tmp_path_factory.mktemp("coco"), num_train=6, num_val=4, size=64)


def ade_dataset(root, split="validation"):
    from mmseg.datasets import ADE20KDataset

    with DefaultScope.overwrite_default_scope("mmseg"):
        return ADE20KDataset(data_root=str(root), data_prefix=dict(img_path=f"images/{split}",
                                                                  seg_map_path=f"annotations/{split}"),
                             pipeline=[dict(type="LoadImageFromFile"),
                                       dict(type="LoadAnnotations", reduce_zero_label=True)])


def test_ade20k_layout_labels_and_pixels_agree(toy_ade):
    dataset = ade_dataset(toy_ade, "training")
    assert len(dataset) == 6 and len(ade_dataset(toy_ade)) == 4
    for index in range(len(dataset)):
        sample = dataset[index]
        labels, image = sample["gt_seg_map"], sample["img"].astype(float)
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 255} and (labels == 255).any()  # wall, 3 shapes, unlabelled
        assert (labels == 0).sum() > labels.size / 4  # the wall
        wall = image[labels == 0].mean(0)
        for cls in set(np.unique(labels)) - {0, 255}:  # every shape stands out from the wall by colour
            assert np.abs(image[labels == cls].mean(0) - wall).mean() > 20


def test_ade20k_ground_truth_scores_full_miou_with_mmseg_iou_metric(toy_ade):
    import torch
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    dataset = ade_dataset(toy_ade)
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        gt = torch.as_tensor(dataset[index]["gt_seg_map"]).long()[None]
        sample = SegDataSample(gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=gt))
        metric.process({}, [sample.to_dict()])
    assert metric.evaluate(len(dataset))["mIoU"] == pytest.approx(100.0)


def test_coco_layout_polygons_and_boxes_agree(toy_coco):
    from pycocotools.coco import COCO

    coco = COCO(str(toy_coco / "annotations" / "instances_val2017.json"))
    assert len(coco.getCatIds()) == 80 and max(coco.getCatIds()) == 90  # COCO's real category ids
    used = {coco.loadCats(a["category_id"])[0]["name"] for a in coco.loadAnns(coco.getAnnIds())}
    assert used <= {"sports ball", "tv", "kite"}
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        assert abs(mask.sum() - ann["area"]) < 0.15 * ann["area"]
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1


def test_coco_ground_truth_scores_full_ap_with_mmdet_coco_metric(toy_coco):
    import torch
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO

    ann_file = str(toy_coco / "annotations" / "instances_val2017.json")
    with DefaultScope.overwrite_default_scope("mmdet"):
        dataset = CocoDataset(data_root=str(toy_coco), ann_file="annotations/instances_val2017.json",
                              data_prefix=dict(img="val2017/"), test_mode=True, pipeline=[])
    metric = CocoMetric(ann_file=ann_file, metric=["bbox", "segm"])
    metric.dataset_meta = dataset.metainfo
    coco = COCO(ann_file)
    for info in dataset.load_data_list():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=info["img_id"]))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns])
        labels = torch.tensor([dataset.cat2label[a["category_id"]] for a in anns])
        masks = torch.stack([torch.as_tensor(coco.annToMask(a)).bool() for a in anns])
        pred = dict(bboxes=boxes, labels=labels, scores=torch.ones(len(anns)), masks=masks)
        metric.process({}, [dict(img_id=info["img_id"], ori_shape=(64, 64), pred_instances=pred)])
    results = metric.evaluate(len(dataset.load_data_list()))
    assert results["coco/bbox_mAP"] == pytest.approx(1.0) and results["coco/segm_mAP"] == pytest.approx(1.0)


def test_written_once_and_deterministic(tmp_path, toy_ade):
    first = make_toy_dataset("ade20k", root=tmp_path / "a", num_train=6, num_val=4, size=64)
    stamp = (first / ".complete").stat().st_mtime_ns
    assert make_toy_ade20k(first, num_train=6, num_val=4, size=64) == first
    assert (first / ".complete").stat().st_mtime_ns == stamp
    name = "annotations/training/ADE_train_00000003.png"
    assert (first / name).read_bytes() == (toy_ade / name).read_bytes()
    with pytest.raises(ValueError, match="unknown toy dataset"):
        make_toy_dataset("cityscapes", root=tmp_path)
