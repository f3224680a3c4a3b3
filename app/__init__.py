"""The composition root: the only package that knows the core, storage and every adapter."""
