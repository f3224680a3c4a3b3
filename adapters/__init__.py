"""Platform adapters: each turns its platform's input into core commands and renders replies."""
