"""Measured benchmarks, kept out of the library: the Chicago (CPDP) benchmark and the
triage-peer speed experiment (``ews benchmark ...``), and the ingest, generator and feature
scripts. Their reference figures (targets, the peer system's times) live here."""
