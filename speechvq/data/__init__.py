"""Corpora in and out: readers (VCTK, speaker folders), phone alignments and phone sets, the
prepared 16 kHz cache, training segments, codes directories, the espeak-ng corpus, alignment and
download."""
