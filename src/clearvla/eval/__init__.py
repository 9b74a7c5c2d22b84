"""Evaluation: closed-loop rollouts in the simulator, success statistics with intervals, reports."""
