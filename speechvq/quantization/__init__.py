"""Vector quantizers (codebook loss and EMA) returning a VQResult."""
