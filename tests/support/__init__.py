"""What many test packages share: virtual clocks, a clean environment, clips, the runner harness."""
