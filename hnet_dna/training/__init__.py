"""Pretraining: optimizer groups, schedules, losses, trainer, checkpoints, distributed, CLI glue.

Entry points: ``hnet-dna pretrain`` (:mod:`hnet_dna.training.pretrain`, hydra) or
:class:`hnet_dna.training.trainer.Trainer` for custom loops.
"""
