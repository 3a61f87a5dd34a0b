"""Photos: landmarks on photos (predict), the sample photos packages ship, and the detector-box calibration."""
