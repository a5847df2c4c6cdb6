# CPU twin of depth-probe_linear-lbfgs_in1k-10pct.py: the same probe of every depth on the embedded shapes dataset
# (mim_zoo/synthetic/shapes.py: 10 classes, 32 px), fitted on a fixed 1,000 of its train images (100 per class) and
# scored on its 500 held-out val images. About 10 s on 2 quiet cores for the tiny ViT (6 probes).
data_root = 'data/generated/shapes32/'
synthetic_data = [dict(type='mim_zoo.synthetic.shapes.make_shapes_dataset', root=data_root, num_train_per_class=200,
                       num_val_per_class=50, size=32, seed=0)]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]  # already 32 x 32
probe = dict(
    train=dict(batch_size=250, num_workers=0, per_class=100,
               dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', pipeline=test_pipeline)),
    val=dict(batch_size=250, num_workers=0,
             dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', pipeline=test_pipeline)),
    weight_decays=(1e-4, 1e-3, 1e-2),
    precision='auto',
    keep='float32',
)
