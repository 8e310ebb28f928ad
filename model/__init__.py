"""Pure torch model code: encoders, memory bank, anomaly maps, calibration, positions, verdicts.

Nothing in this package does I/O beyond reading/writing tensor files it is handed a path to.
"""
