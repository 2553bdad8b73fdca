"""The EPFL EE-559 (Deep Learning, 2022) Noise2Noise course API and its data.

* :mod:`denoise.ee559.project1`: ``Model`` of mini-project 1 (a PyTorch U-Net);
* :mod:`denoise.ee559.project2`: ``Model`` of mini-project 2 (the framework without
  autograd, :mod:`denoise.scratch`) and the course's names of its building blocks;
* :mod:`denoise.ee559.course`: what both share (the course's tensors, the epoch loop on
  the library's symmetries, learning-rate schedule and weights registry);
* :mod:`denoise.ee559.data`: ``train_data.pkl`` / ``val_data.pkl`` rebuilt from photos;
* :mod:`denoise.ee559.export`: the course's project folder;
* :mod:`denoise.ee559.pretrain`: the training runs behind the shipped weights.

From the command line::

    denoise data ee559 --source ../shared/data/CBSD432 --out course_data
    denoise ee559 export Proj_000000_000000_000000
    denoise ee559 train 2 --data course_data --epochs 6      # re-make a shipped model

and in Python, as the course's harness does with the exported folder on ``sys.path``::

    from Miniproject_1.model import Model    # or: from denoise.ee559.project1 import Model
    model = Model()
    model.load_pretrained_model()
    model.train(train_input, train_target, num_epochs=1)   # uint8/float (N, 3, H, W), 0-255
    denoised = model.predict(noisy)                        # float32, 0-255, same shape

Noise levels are on the library's 0-1 scale in every function here; the 0-255 scale
appears only on the command line and as ``sigma_255`` in the data's ``recipe.json``.
Submodules are imported on use, so ``import denoise.ee559`` stays light.
"""
