"""Robot data: one episode model, format readers/writers, cleaning, statistics, mixtures and batching.

Entry points (import the module you need; nothing heavy is imported here):
- `formats.open_source(path)` -> an EpisodeSource over RLDS/TFRecord, LeRobot v3 or LIBERO HDF5;
  `formats.lerobot.LeRobotWriter` / `read_lerobot` for clearvla's native format.
- `index.scan_dataset(source, CleaningConfig(), cache_dir=...)` -> cleaned episodes, report and statistics.
- `mixture.Mixture.build([DatasetSpec(path, weight), ...])` -> `.norm_stats`, `.save_norm_stats(path)`.
- `loader.make_dataloader(mixture, tokenizer, processor, batch_size=..., num_workers=2, seed=...)`.
- `convert.export_lerobot(source, out, plan=...)` -> a new (cleaned) LeRobot v3 dataset.
"""
