"""klingbot core: commands, pricing, wallets and replies, with no platform imports."""
