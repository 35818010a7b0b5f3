"""Analysis of trained models: diagnosis, likelihood, probes, conversion metrics and scoring, the samples page."""
