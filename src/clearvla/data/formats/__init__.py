"""Readers and writers for on-disk robot datasets (RLDS/TFRecord, LeRobot v3, HDF5)."""
