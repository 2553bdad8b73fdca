"""The EPFL EE-559 (Deep Learning, 2022) Noise2Noise course API and its data.

* :mod:`denoise.ee559.project1`: ``Model`` of mini-project 1 (a PyTorch U-Net);
* :mod:`denoise.ee559.project2`: ``Model`` of mini-project 2 (the framework without
  autograd, :mod:`denoise.scratch`) and the course's names of its building blocks;
* :mod:`denoise.ee559.data`: ``train_data.pkl`` / ``val_data.pkl`` rebuilt from photos;
* :mod:`denoise.ee559.export`: the course's project folder (``denoise ee559 export DIR``);
* :mod:`denoise.ee559.pretrain`: the training runs behind the shipped weights.

Submodules are imported on use, so ``import denoise.ee559`` stays light.
"""
