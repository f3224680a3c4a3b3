"""Static assets shipped with the bot, such as the ``sample.jpg`` demo image."""
