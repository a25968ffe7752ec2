"""Training one configuration: the model, its devices, its epochs, its checkpoints, its predictions.

`models` builds a backbone from the registry (`hamtune.backbones`) with its in-graph
augmentation (`augment`) and ImageNet weights (`download`); `device` picks the Keras backend,
devices, threads and precision; `warm` keeps a worker's built, compiled model for its next trial
(its dropout a `dropout.TunableDropout`); `trial` is a trial's loop (`run_trial`, and
`train_epochs`, which refits share), in the `phases` of its mode, saving and restoring
`checkpoint`s and scoring through `inference`. Nothing here knows about Ray or Optuna: Ray Tune drives `run_trial` through
`hamtune.sweep.tune`, and `hamtune train` calls it in-process.
"""
