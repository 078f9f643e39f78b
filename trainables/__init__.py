"""Worker-side code: one module per model (a `ray.tune.Trainable`) plus the pieces they share."""
