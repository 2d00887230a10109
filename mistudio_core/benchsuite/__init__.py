"""A CPU benchmark suite for any library SAE: core metrics + shrinkage, feature absorption, k-sparse probing and
an auto-interpretation score, stored per (SAE, suite version, dataset) with their provenance (`results.py`)."""
