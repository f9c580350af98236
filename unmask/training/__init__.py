"""Training of both stages: ``unmask.training.loop.train(cfg, options)``.

Stage 1 (``seg``) fits M-Seg with BCE + Dice; stage 2 (``gan``) fits the FU-Net generator against
the patch discriminator on ground-truth maps (paper) or on M-Seg predictions. ``all`` runs both.

One module per concern:

* ``options``    ``RunOptions`` (how and where to run) and the errors of a run (no torch import)
* ``runtime``    device, rank / DDP process group, mixed precision, determinism, seeding
* ``stages``     what differs between the stages: networks, optimisers, steps, validation
* ``loop``       the loop of one stage (validation, checkpoints, exact resume) and ``train``
* ``run_files``  run.json, ``{stage}_metrics.json``, TSV logs, sample grids
"""
