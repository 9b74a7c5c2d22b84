"""The two-dataset, handover-round recipe the recipe tests start from: `first` trains on `demos`, and `round1` is
recorded with `first` acting. Tests append the stages they need."""

SMALL_RECIPE = """\
defaults: {lr: 0.001, max_steps: 4}
datasets:
  demos: {episodes: 2}
  round1: {episodes: 1, handover: first, normalize_like: demos}
stages:
  first: {init: tiny, datasets: [demos]}
"""
