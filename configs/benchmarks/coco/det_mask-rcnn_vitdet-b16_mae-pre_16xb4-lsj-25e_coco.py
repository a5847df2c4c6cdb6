# The ViTDet recipe of det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py on a 25-epoch schedule (the length
# of the ConvMAE / MR-MAE COCO numbers): the same steps at 8/9 and 26/27 of the run, rescaled.
_base_ = './det_mask-rcnn_vitdet-b16_mae-pre_16xb4-lsj-100e_coco.py'

num_gpus = 16
batch_per_gpu = 4
batch_size = num_gpus * batch_per_gpu
epochs = 25
images_per_epoch = 118000
max_iters = round(epochs * images_per_epoch / batch_size)  # 46094
milestones = [round(max_iters * 8 / 9), round(max_iters * 26 / 27)]
warmup_iters = 250

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=milestones, gamma=0.1),
]
train_cfg = dict(max_iters=max_iters)
