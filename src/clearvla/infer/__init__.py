"""Inference: policies that turn observations into robot actions."""
