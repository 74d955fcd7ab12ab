"""MPI only partitions work: rank/size, ``partition`` and leader-only writes.

mpi4py is imported lazily, and only when the program runs under ``mpirun`` (``OMPI_COMM_WORLD_SIZE``
/ ``PMI_SIZE`` set), so single-process runs never need MPI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Comm", "get_comm", "partition", "first_rank_per_host", "ENV_HOST"]

#: overrides the host name that groups ranks sharing a node's local disk (default: the MPI processor name)
ENV_HOST = "POLISHPLUGIN_HOST"


def partition(n_items: int, size: int, rank: int) -> range:
    """Contiguous block of ``range(n_items)`` for ``rank`` of ``size`` (sizes differ by at most one)."""
    base, extra = divmod(n_items, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def first_rank_per_host(hosts: list[str]) -> list[int]:
    """For every rank (the index into ``hosts``), the lowest rank on the same host."""
    first: dict[str, int] = {}
    return [first.setdefault(h, r) for r, h in enumerate(hosts)]


@dataclass
class Comm:
    """A thin wrapper: ``rank``, ``size``, ``is_leader`` and the few collectives the programs use."""

    rank: int = 0
    size: int = 1
    _comm: Any = None

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def host(self) -> str:
        """This rank's host name (:data:`ENV_HOST` when set, else MPI's processor name or the host name)."""
        if os.environ.get(ENV_HOST):
            return os.environ[ENV_HOST]
        if self._comm is not None:
            from mpi4py import MPI
            return MPI.Get_processor_name()
        import socket
        return socket.gethostname()

    def first_ranks_per_host(self) -> list[int]:
        """For every rank, the lowest rank on its host (:func:`first_rank_per_host` of every rank's :meth:`host`)."""
        return first_rank_per_host(self.allgather(self.host()))

    def barrier(self) -> None:
        if self._comm is not None:
            self._comm.Barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Objects of all ranks at the leader (rank order), None elsewhere."""
        if self._comm is None:
            return [obj]
        return self._comm.gather(obj, root=0)

    def allgather(self, obj: Any) -> list[Any]:
        return [obj] if self._comm is None else self._comm.allgather(obj)

    def bcast(self, obj: Any) -> Any:
        return obj if self._comm is None else self._comm.bcast(obj, root=0)

    def allreduce_sum(self, array: Any) -> Any:
        """Element-wise sum of a numpy array over ranks."""
        if self._comm is None:
            return array
        import numpy as np

        out = np.zeros_like(array)
        self._comm.Allreduce(np.ascontiguousarray(array), out)
        return out


def _launched_by_mpirun() -> bool:
    return any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"))


def get_comm() -> Comm:
    """The world communicator when launched by mpirun, else a single-rank stand-in."""
    if not _launched_by_mpirun():
        return Comm()
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_size() == 1:
        return Comm()
    return Comm(world.Get_rank(), world.Get_size(), world)
