"""The store: SQLite (embedded default) or MySQL-protocol (Dolt, MariaDB, MySQL) behind one API.

See :mod:`tundra.store.api` for the records and repositories other services use.
"""

from tundra.store.api import (
    AgentRunRecord as AgentRunRecord,
)
from tundra.store.api import (
    AuditEventRecord as AuditEventRecord,
)
from tundra.store.api import (
    StoreAPI as StoreAPI,
)
from tundra.store.api import (
    StoreState as StoreState,
)
from tundra.store.api import (
    TaskEventRecord as TaskEventRecord,
)
from tundra.store.api import (
    TaskRecord as TaskRecord,
)
from tundra.store.api import (
    TerminalRecord as TerminalRecord,
)
from tundra.store.store import Store as Store
from tundra.store.store import open_store as open_store
