"""Video generation providers."""
