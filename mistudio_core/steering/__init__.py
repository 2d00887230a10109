"""Steering: generate with SAE features amplified or suppressed, next to an unsteered baseline.

- `methods.py`: the interventions (Neuronpedia's additive, orthogonal decomposition, projection cap; and a
  feature-space clamp that edits only the SAE's own reconstruction).
- `transcoder.py`: which hook an SAE encodes (`read_hook`: a transcoder's input) and `steer`, the one way a
  `Steerer` is installed (a transcoder writes at its output hook and reads its input of the same forward pass).
- `generate.py`: baseline and steered generation from one seed, batched into one forward, streamed.
- `sweep.py`: a strength sweep over seeds beside an unsteered baseline: both activations, perplexity, effect share,
  suggested strength.
- `score.py`: the unsteered model's reading of a text (perplexity, `feature_mean`), and the names that keep it apart
  from `steered_feature_mean` (recorded in the hook by `methods.Steerer`).
- `effect.py`: the feature's top tokens (extraction results, else the unembedding), their share in generated text,
  the suggested strength, token specificity.
- `sessions.py`: steering sessions and prompt sets as JSON in the data directory.
"""
