"""import-linter contract types of this project (``.importlinter``).

``pending_forbidden`` is import-linter's forbidden contract for packages that
may not exist yet (the KIS, CCXT and Kite adapters): a source or forbidden
module missing from the code is left out instead of failing the run, so the
contract applies as soon as the package lands. Modules that exist are checked
exactly as by ``forbidden``.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.domain.contract import ContractCheck
from importlinter.domain.imports import ModuleExpression


def _present(graph: ImportGraph, expressions: list[ModuleExpression]) -> list[ModuleExpression]:
    # Wildcard expressions match nothing harmlessly; plain names must exist.
    return [e for e in expressions if e.has_wildcard_expression() or e.expression in graph.modules]


class PendingForbiddenContract(ForbiddenContract):
    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        self.source_modules = _present(graph, list(self.source_modules))  # type: ignore[arg-type]
        self.forbidden_modules = _present(graph, list(self.forbidden_modules))  # type: ignore[arg-type]
        if not self.source_modules:
            return ContractCheck(kept=True, warnings=[], metadata={"invalid_chains": []})
        return super().check(graph, verbose)
