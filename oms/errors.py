"""OMS domain errors (translated once into the error shape)."""

from core.exceptions import Conflict, DomainError, Forbidden, InvalidInput, NotFound

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "TradingDisabled",
    "RiskRejected",
    "BrokerNotConfigured",
]


class IllegalTransition(Conflict):
    code = "illegal_transition"
    default_message = "The order cannot move to that state."


class TradingDisabled(Forbidden):
    code = "trading_disabled"
    default_message = "Trading is disabled on this account by staff; cancels are still allowed."


class BrokerNotConfigured(Conflict):
    code = "broker_not_configured"
    default_message = "The account's broker is not configured: no adapter serves it or a required credential is unset."


class RiskRejected(InvalidInput):
    code = "risk_rejected"
    default_message = "The order breaks a pre-trade risk limit."
