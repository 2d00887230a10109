"""The data layer: datasets as raw text, local text files, tokenization into fixed-length contexts and the token
grids on disk. Stands on `platform` and `model` (a tokenization belongs to a model's tokenizer)."""
