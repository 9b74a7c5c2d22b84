"""Training recipes: a whole chain of stages and the datasets they record, in one file, run resumably (spec.py,
runner.py, manifest.py; `clearvla recipe`)."""
