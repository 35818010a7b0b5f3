"""Inference: batched fast generation, the SpeechVQ object behind speechvq.load, batch conversion."""
