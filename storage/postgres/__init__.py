"""PostgreSQL storage (``KLINGBOT_DATABASE_URL``): the same ports as SQLite, for replicas."""
