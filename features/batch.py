"""``TransactionBatch``: the columnar form of many transactions, what stores and models take."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fraudstream.features.definitions import FloatArray, IntArray

if TYPE_CHECKING:
    from fraudstream.features.schema import Transaction


@dataclass(frozen=True)
class TransactionBatch:
    """Transactions as columns; row ``i`` of every column is the same transaction."""

    transaction_id: list[str]
    """Unique ids."""
    customer_id: list[str]
    """Customers."""
    terminal_id: list[str]
    """Terminals."""
    event_time_ms: IntArray
    """Event times, epoch ms, int64."""
    amount: FloatArray
    """Amounts, float64."""

    def __post_init__(self) -> None:
        n = len(self.transaction_id)
        sizes = {len(self.customer_id), len(self.terminal_id), len(self.event_time_ms)}
        if sizes | {len(self.amount)} != {n}:
            msg = "every column of a TransactionBatch must have the same length"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.transaction_id)

    @classmethod
    def from_columns(
        cls,
        transaction_id: Sequence[str],
        customer_id: Sequence[str],
        terminal_id: Sequence[str],
        event_time_ms: npt.ArrayLike,
        amount: npt.ArrayLike,
    ) -> TransactionBatch:
        """Build from any sequences; times become int64 and amounts float64."""
        return cls(
            list(transaction_id),
            list(customer_id),
            list(terminal_id),
            np.asarray(event_time_ms, dtype=np.int64).reshape(-1),
            np.asarray(amount, dtype=np.float64).reshape(-1),
        )

    @classmethod
    def from_transactions(cls, transactions: Iterable[Transaction]) -> TransactionBatch:
        """Columns of the given records, in order."""
        txs = list(transactions)
        return cls.from_columns(
            [t.transaction_id for t in txs],
            [t.customer_id for t in txs],
            [t.terminal_id for t in txs],
            [t.event_time_ms for t in txs],
            [t.amount for t in txs],
        )

    def take(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> TransactionBatch:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return TransactionBatch(
            [self.transaction_id[i] for i in idx],
            [self.customer_id[i] for i in idx],
            [self.terminal_id[i] for i in idx],
            self.event_time_ms[idx],
            self.amount[idx],
        )
