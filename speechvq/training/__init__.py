"""Training, one job per module.

- `trainer`: the generic, resumable `Trainer` (one step, logging, validation, checkpoints, DDP);
- `schedule`: learning-rate schedule and data order; `state`: RNG state and the checkpoint directory;
- `session`: the set-up and tear-down every training entry point shares (config, threads, DDP, seeds);
- `vqvae`: `train(cfg)`, the VQ-VAE's (and the unit vocoder's) loss and validation;
- `train_prior`: `train_prior(cfg)`, the code prior's data, loss and validation;
- `distributed`: process group and device under torchrun; `logging`: TensorBoard and console lines.
"""
