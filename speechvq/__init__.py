"""speechvq: discrete speech units from raw audio with a VQ-VAE (van den Oord et al. 2017).

The small Python API::

    import speechvq
    model = speechvq.load("exp/demo/vqvae")          # a checkpoint file or a run directory
    codes = model.encode(wav)                        # (N,) int64, 250 codes per second
    out = model.decode(codes, speaker="en-us+f1")    # (64 * N,) float32 at 16 kHz
    converted = model.convert(wav, speaker="en-us+m3")
    model.speakers                                   # speakers the decoder knows
"""

__version__ = "0.1.0"


def load(checkpoint, device=None):
    """Load a trained VQ-VAE for encoding, decoding and conversion; see `speechvq.inference.pipeline.SpeechVQ`."""
    from speechvq.inference.pipeline import SpeechVQ

    return SpeechVQ.from_checkpoint(checkpoint, device=device)
