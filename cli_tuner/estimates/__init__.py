"""Estimates before renting a GPU: peak memory (and its split per GPU), throughput, and smoke's
calibration of both for `full`."""
