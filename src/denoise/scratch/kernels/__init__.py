"""The convolution kernels of the scratch framework, written with tensor operations only.

* :mod:`.reference`: the reference convolution, plain im2col, forward and backward side by
  side (channels-first, written to be read). The yardstick of every fast path, and the
  computation of convolutions with few input channels (its columns; also its product
  when the output is narrow, as in the EE-559 course's ``Conv2d`` check);
* :mod:`.fast`: the optimised formulations on channels-last data, in chunks: im2col and
  col2im with column writers that pad once per call or not at all ("same" convolutions),
  the transposed form (col2im, ``fold``), shifted products, and the reference in blocks;
* :mod:`.routes`: which of them a layer uses, per direction;
* :mod:`.geometry`: windows, layouts, weight matrices, the phases of an upsampling
  convolution.

The layers (:mod:`denoise.scratch.layers`) call :mod:`.routes` and :mod:`.fast`;
``tests/scratch/test_scratch_kernels.py`` checks each fast formulation against
:mod:`.reference`, and ``tests/scratch/test_scratch_layers.py`` the layers against
``torch.nn`` with autograd.
"""
