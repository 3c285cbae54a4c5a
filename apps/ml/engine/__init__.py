"""The training engine: the generator-type contract and registry, one trainer, typed configs,
checkpoints, EMA, augmentation, devices and image helpers. No Django."""
