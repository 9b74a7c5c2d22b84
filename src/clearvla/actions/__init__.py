"""Actions: continuous <-> discrete token ids, and normalisation with dataset statistics."""
