"""Action values in [-1, 1] <-> LLM token ids, bit-compatible with OpenVLA (spec section 7)."""

from __future__ import annotations

import numpy as np

from clearvla.errors import InputError


class ActionTokenizer:
    """Uniform bins over [-1, 1], mapped onto the top `n_bins` ids of a base vocabulary.

    `vocab_size` is the tokenizer vocabulary without added tokens (32000 for Llama-2): the value
    `text_config.vocab_size - pad_to_multiple_of` in an OpenVLA config. Bin edges are
    `linspace(-1, 1, n_bins)`; the ids used are `vocab_size - n_bins .. vocab_size - 1`.
    """

    def __init__(self, vocab_size: int, n_bins: int = 256) -> None:
        if n_bins < 2 or vocab_size <= n_bins:
            raise InputError(f"ActionTokenizer needs 2 <= n_bins < vocab_size, got n_bins={n_bins}, vocab_size={vocab_size}")
        self.vocab_size = vocab_size
        self.n_bins = n_bins
        self.bins = np.linspace(-1.0, 1.0, n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    @property
    def first_token_id(self) -> int:
        """Lowest id an action can take (the value +1 lands here)."""
        return self.vocab_size - self.n_bins

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Normalised actions [..., A] (clipped to [-1, 1]) -> token ids [..., A] int64. NaN is an error."""
        actions = np.asarray(actions, dtype=np.float64)
        if np.isnan(actions).any():
            raise InputError(f"cannot tokenize NaN actions (shape {actions.shape})")
        clipped = np.clip(actions, -1.0, 1.0)
        return (self.vocab_size - np.digitize(clipped, self.bins)).astype(np.int64)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """Token ids [..., A] -> normalised actions [..., A] float64 (bin centres; stray ids clip to the ends)."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        index = np.clip(self.vocab_size - token_ids - 1, 0, len(self.bin_centers) - 1)
        return self.bin_centers[index]

    def is_action_token(self, token_ids: np.ndarray) -> np.ndarray:
        """Boolean mask of ids that fall inside the action range."""
        token_ids = np.asarray(token_ids)
        return (token_ids >= self.first_token_id) & (token_ids < self.vocab_size)
