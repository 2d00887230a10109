"""The model layer: registering and loading causal LMs, their hook points, batches of activations and the dtype
they compute in. Stands on `platform` only."""
