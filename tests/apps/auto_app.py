import amqadf_agent.auto  # noqa: F401, I001 - the first import: starts the agent and the instrumentations

import sqlite_app  # beside this file (sys.path[0])

sqlite_app.main()
