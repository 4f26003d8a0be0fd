"""Alembic's entry: voiceagent.db.migrate hands it an open connection (SQLite or Postgres); the revisions
write plain SQL through `voiceagent.migrations.ddl` so one text serves both databases."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic upgrade head` from a shell: -x url=postgresql+psycopg://... or sqlite:///...
    import sqlalchemy

    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("alembic: pass -x url=... (or run `voiceagent db upgrade`)")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as connection:
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
