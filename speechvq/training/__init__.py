"""Training: the generic Trainer and train(cfg) for the VQ-VAE, train_prior(cfg), DDP set-up and logging."""
