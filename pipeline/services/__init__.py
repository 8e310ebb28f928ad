"""Services the CLI, the API and the stream's driver share: bank management (build, learn, calibrate,
sensitivity, cold start), self-calibration rounds, the dialogue and the facts it is grounded in."""
