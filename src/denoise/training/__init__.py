"""Training: one Trainer for noisy (Noise2Noise) or clean targets.

* :mod:`.config`: every option of a run (:class:`TrainConfig`), its help line, the
  learning-rate schedules;
* :mod:`.data`: training data sources (clean images + noise, noisy pairs, EE-559 pairs);
* :mod:`.losses`: the loss each noise calls for;
* :mod:`.trainer`: the :class:`Trainer` (checkpoints, exact resume, validation);
* :mod:`.distributed`: the torchrun group;
* :mod:`.runlog`: the run folder's log and curves;
* :mod:`.export`: a run's checkpoint turned into weights and a model card;
* :mod:`.fit`: fine-tuning on one's own noisy photos (``denoise fit``).
"""
from .config import OPTION_HELP, SCHEDULES, TrainConfig, learning_rate
from .export import export_weights, hardware_description
from .runlog import read_log
from .trainer import Trainer, TrainResult, build_model, train

__all__ = ["OPTION_HELP", "SCHEDULES", "TrainConfig", "Trainer", "TrainResult", "build_model",
           "export_weights", "hardware_description", "learning_rate", "read_log", "train"]
