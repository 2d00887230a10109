"""The platform layer: what every other part of the core stands on and that knows nothing of ML — user-facing
errors, the data directory (store), strict records, the system monitor, the memory guard, where the app runs
(runtime) and whether the hub can be reached. Imports nothing else of mistudio_core."""
