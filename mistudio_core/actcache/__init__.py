"""The activation cache: a model's activations on a tokenization's train contexts, captured once and replayed
(`cache`), and the training job's side of it — which cache a job uses, its identity, capturing it (`job`).
Stands on `platform`, `model` and `data`."""
