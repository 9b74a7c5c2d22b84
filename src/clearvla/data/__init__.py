"""Robot data: one episode model, format readers/writers, cleaning, statistics, mixtures and batching."""
