"""Measured runs (quality, speed, scale, peer comparison); `posapl bench --help` lists them."""
