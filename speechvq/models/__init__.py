"""Assembled models (encoder, decoder, VQ-VAE, prior), their builders from configs (the only
config reader) and checkpoint loading."""
