"""The Lua scripts of the Redis store: one call applies a chunk of a batch atomically.
Each is assembled from the files of ``features/lua/`` (``fraudstream.features.redis_lua_files``).

Key layout under a prefix ``P`` (every key of an entity shares its hash tag):

- ``P:{x:<tx id>}`` string, the fingerprint of the content the id was first applied with
  (a conflicting copy is detected by it, see ``fraudstream.features.store``); it lives as
  long as the rows hash of a period (``rttl``)
- ``P:{c:<customer>}:h`` string, the customer's history (see ``CUSTOMER HISTORY`` in
  ``entity_histories.lua``)
- ``P:{c:<customer>}:m`` string, the customer's older maxima when there are more than
  its history's header holds (see ``CUSTOMER MAXIMA`` in ``amount_history.lua``)
- ``P:{c:<customer>}:r<period>`` hash, tx id -> raw row (little-endian f64s, then the row's
  flags) returned the first time (idempotency), one hash per period of ``refresh_s`` (a
  week) of event time
- ``P:{c:<customer>}:log`` string, the customer's log, instead of the three keys above
  when the customer's state is held by the process that scores it (``--customer-state
  local``; ``fraudstream.features.customer_log``), layout ``LAYOUT`` + ``L``
- ``P:{t:<terminal>}:w`` string, the terminal's history (see ``TERMINAL HISTORY``)
- ``P:{t:<terminal>}:i<period>`` hash (Redis Cluster only), the tx ids the terminal holds
- ``P:{t:<terminal>}:l`` sorted set of every labelled tx id (first label wins)
- ``P:{t:<terminal>}:f`` sorted set of fraud-labelled tx ids by event second
- ``P:{t:<terminal>}:fs`` string, their event seconds (what windows count)
- ``P:{o:<topic>}:offsets`` hash, partition -> highest applied offset mark
- ``P:{o:<topic>}:guard:<token>`` counter of the calls of a batch sent in several, for
  the last one's marks (see ``apply_transactions.lua``); deleted by it, or expires in 10
  minutes

An entity's window history is one binary string, appended to in order (one APPEND) and
searched in Lua: read whole when short, by blocks when long (``sorted_runs.lua``), so that
no transaction costs more than a few short reads, however hot its key.

Single node: ``APPLY_TRANSACTIONS`` claims the id and does both halves per transaction.
Redis Cluster (``fraudstream.features.redis_cluster``): ``APPLY_IDS``, ``APPLY_TERMINALS``,
then ``APPLY_CUSTOMERS``, one call per node and chunk, each idempotent on its own (see that
module for why the order makes retries safe).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fraudstream.features.redis_lua_files import assemble
from fraudstream.features.store import ROWS_PERIOD_S

TTL_REFRESH_S = ROWS_PERIOD_S
"""A customer's keys get their idle TTL again once its event time moved this far; it is
also the period of event time one customer rows hash holds."""
LAYOUT = 6
"""The key layout above (5: 72-byte customer headers and 48-byte records with running
totals of cents and square limbs, rows with four amount history columns; 4: customer
headers without the maxima area, every maximum in ``:m``; 3: customer records without
cents and square limbs, no maxima, rows without the amount history and fraud ages; 2: no
identity keys, 24-byte customer headers, rows without flags; 1: one rows hash per
customer and a tx id list to trim it)."""


def rows_keys(prefix: str, customer_ids: Sequence[str], event_seconds: npt.ArrayLike) -> list[str]:
    """The rows hash of each transaction: its customer's, for the period of its event
    second (as the scripts compute it)."""
    periods = np.floor_divide(np.asarray(event_seconds, dtype=np.int64), TTL_REFRESH_S)
    return [f"{prefix}:{{c:{c}}}:r{p}" for c, p in zip(customer_ids, periods.tolist(), strict=True)]


_TRANSACTION_PARTS = (
    "transaction_args.lua",
    "sorted_runs.lua",
    "amount_history.lua",
    "entity_histories.lua",
    "terminal_half.lua",
)
"""What every transaction script starts with, in this order (each part uses the locals of
those before it)."""
_LABEL_PARTS = ("sorted_runs.lua", "fraud_seconds.lua", "apply_labels.lua")
_CROSS_SLOT = "allow-cross-slot-keys"
"""Cluster scripts declare no keys and name them in ARGV: they run on the node that holds
every key they touch, across that node's slots (a declared key list must be one slot)."""

APPLY_TRANSACTIONS = assemble(*_TRANSACTION_PARTS, "apply_transactions.lua")
APPLY_IDS = assemble(*_TRANSACTION_PARTS, "apply_ids.lua", flags=_CROSS_SLOT)
APPLY_TERMINALS = assemble(*_TRANSACTION_PARTS, "apply_terminals.lua", flags=_CROSS_SLOT)
APPLY_CUSTOMERS = assemble(*_TRANSACTION_PARTS, "apply_customers.lua", flags=_CROSS_SLOT)
APPLY_LOCAL = assemble(*_TRANSACTION_PARTS, "apply_local.lua")
"""Customer state held locally (``fraudstream.features.local_store``): claims, terminals, logs."""
REPLACE_LOG = assemble("replace_log.lua")
APPEND_LOGS = assemble("append_logs.lua", flags=_CROSS_SLOT)
"""The same on a Redis Cluster, after ``APPLY_IDS`` and ``APPLY_TERMINALS``."""
APPLY_LABELS = assemble("label_args.lua", *_LABEL_PARTS)
APPLY_LABELS_CROSS_SLOT = assemble("label_args_cross_slot.lua", *_LABEL_PARTS, flags=_CROSS_SLOT)
