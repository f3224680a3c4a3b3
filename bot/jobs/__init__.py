"""The generation lifecycle: quotes, jobs, their store port and the runner that drives them."""
