"""Inputs and (documented) outputs of the F&O analytics endpoints. Greeks, IV
and other model outputs are JSON numbers (null with a reason, never NaN);
instrument prices are decimal strings."""

from __future__ import annotations

import math
from typing import Any

from rest_framework import serializers

from marketdata.api.serializers import UnixTimeField
from marketdata.fo.series import METRICS

MAX_VOLATILITY = 100.0  # 10,000%: beyond any market, still a finite computation
MAX_YEARS = 100.0


class _Finite(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value


class _TimeRange(serializers.Serializer):
    to = UnixTimeField(required=False, help_text="End of the range, exclusive: unix seconds or ISO 8601. Default: now.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()  # ``from`` is a Python keyword: no class attribute
        fields["from"] = UnixTimeField(
            required=False, help_text="Start of the range, inclusive: unix seconds or ISO 8601. Default: a day before to."
        )
        return fields


class CalculatorQuerySerializer(serializers.Serializer):
    model = serializers.ChoiceField(
        choices=["bs", "black76"], default="bs", help_text="bs: Black-Scholes with dividend yield; black76: options on futures."
    )
    option_type = serializers.ChoiceField(choices=["call", "put"])
    spot = _Finite(min_value=0.0, help_text="The underlying's price; the futures price for black76. > 0.")
    strike = _Finite(min_value=0.0, help_text="> 0.")
    time_years = _Finite(min_value=0.0, max_value=MAX_YEARS, help_text="Years to expiry (ACT/365); 0 gives the intrinsic limit.")
    rate = _Finite(min_value=-1.0, max_value=1.0, help_text="Risk-free rate, continuous, decimal (0.05 = 5%).")
    dividend_yield = _Finite(required=False, default=0.0, min_value=-1.0, max_value=1.0, help_text="Continuous dividend yield (bs only).")
    volatility = _Finite(required=False, min_value=0.0, max_value=MAX_VOLATILITY, help_text="Decimal (0.2 = 20%). Give this or price.")
    price = _Finite(required=False, help_text="An option price: answers its implied volatility instead.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("spot", "strike"):
            if attrs[name] <= 0:
                raise serializers.ValidationError({name: ["Must be greater than 0."]})
        if ("volatility" in attrs) == ("price" in attrs):
            raise serializers.ValidationError({"volatility": ["Give exactly one of volatility and price."]})
        return attrs


class CalculatorSerializer(serializers.Serializer):
    model = serializers.CharField()
    option_type = serializers.CharField()
    spot = serializers.FloatField()
    strike = serializers.FloatField()
    time_years = serializers.FloatField()
    rate = serializers.FloatField()
    dividend_yield = serializers.FloatField()
    volatility = serializers.FloatField(required=False, help_text="Echoed when given.")
    price = serializers.FloatField(allow_null=True, help_text="The model price (with volatility) or the price given.")
    delta = serializers.FloatField(required=False, allow_null=True)
    gamma = serializers.FloatField(required=False, allow_null=True)
    theta_per_year = serializers.FloatField(required=False, allow_null=True, help_text="dPrice/dt per calendar year.")
    theta_per_day = serializers.FloatField(required=False, allow_null=True, help_text="theta_per_year / 365.")
    vega = serializers.FloatField(required=False, allow_null=True, help_text="Per 1 volatility point (0.01).")
    rho = serializers.FloatField(required=False, allow_null=True, help_text="Per 1 rate point (0.01).")
    d1 = serializers.FloatField(required=False, allow_null=True)
    d2 = serializers.FloatField(required=False, allow_null=True)
    implied_volatility = serializers.FloatField(required=False, allow_null=True, help_text="With price=: null when there is none.")
    reason = serializers.CharField(
        allow_null=True,
        help_text="Why a field is null: non_positive_price, expired, below_intrinsic, above_upper_bound, time_value_lost, no_time_value.",
    )


class ChainQuerySerializer(serializers.Serializer):
    underlying = serializers.CharField(max_length=64)
    expiry = serializers.DateField(help_text="The options' expiry date, YYYY-MM-DD.")
    option_side = serializers.ChoiceField(choices=["call", "put", "both"], default="both")
    strikes = serializers.IntegerField(default=20, min_value=1, max_value=400, help_text="How many strikes nearest the ATM strike.")
    iv_basis = serializers.ChoiceField(
        choices=["atm", "smile"],
        default="atm",
        help_text="The model IV of premium/discount: the ATM IV or the smile interpolated at the strike.",
    )


class DepthSerializer(serializers.Serializer):
    mid = serializers.FloatField(allow_null=True)
    spread = serializers.FloatField(allow_null=True)
    spread_bps = serializers.FloatField(allow_null=True)
    microprice = serializers.FloatField(allow_null=True)
    depth_imbalance = serializers.FloatField(allow_null=True, help_text="(bid size - ask size) / both, over the levels: -1..1.")
    liquidity_score = serializers.FloatField(allow_null=True, help_text="0-100; see the README's formula.")
    levels = serializers.IntegerField()
    reason = serializers.CharField(allow_null=True)


class PremiumSerializer(serializers.Serializer):
    model_iv = serializers.FloatField(allow_null=True)
    model_price = serializers.FloatField(allow_null=True)
    premium = serializers.FloatField(allow_null=True, help_text="Market price - model price; negative is a discount.")
    premium_percent = serializers.FloatField(allow_null=True)
    reason = serializers.CharField(allow_null=True)


class ChainLegSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    moneyness = serializers.CharField(help_text="ATM, ITMn or OTMn.")
    last = serializers.CharField(allow_null=True)
    bid = serializers.CharField(allow_null=True)
    ask = serializers.CharField(allow_null=True)
    bid_size = serializers.CharField(allow_null=True)
    ask_size = serializers.CharField(allow_null=True)
    volume = serializers.CharField(allow_null=True)
    open_interest = serializers.CharField(allow_null=True)
    oi_change = serializers.CharField(allow_null=True, help_text="Since the previous trading day's last stored OI.")
    price = serializers.CharField(allow_null=True, help_text="The price the IV is solved from: the mid, else the last.")
    iv = serializers.FloatField(allow_null=True)
    iv_reason = serializers.CharField(allow_null=True)
    delta = serializers.FloatField(allow_null=True)
    gamma = serializers.FloatField(allow_null=True)
    theta_per_year = serializers.FloatField(allow_null=True)
    theta_per_day = serializers.FloatField(allow_null=True)
    vega = serializers.FloatField(allow_null=True, help_text="Per vol point.")
    rho = serializers.FloatField(allow_null=True, help_text="Per rate point.")
    greeks_reason = serializers.CharField(allow_null=True)
    depth = DepthSerializer()
    premium = PremiumSerializer()


class ChainRowSerializer(serializers.Serializer):
    strike = serializers.CharField()
    moneyness_steps = serializers.IntegerField(help_text="Strikes from the ATM one (negative below).")
    call = ChainLegSerializer(allow_null=True)
    put = ChainLegSerializer(allow_null=True)


class SmilePointSerializer(serializers.Serializer):
    strike = serializers.CharField()
    iv = serializers.FloatField(allow_null=True)


class StrikeDistributionSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    expiry_time = serializers.DateTimeField(help_text="The expiry moment: the session close on the expiry date.")
    time = serializers.DateTimeField()
    model = serializers.CharField()
    rate = serializers.FloatField()
    dividend_yield = serializers.FloatField()
    years_to_expiry = serializers.FloatField(allow_null=True)
    days_to_expiry = serializers.FloatField(allow_null=True)
    spot = serializers.CharField(allow_null=True)
    forward = serializers.FloatField(allow_null=True)
    spot_reason = serializers.CharField(allow_null=True)
    atm_strike = serializers.CharField(allow_null=True)
    atm_iv = serializers.FloatField(allow_null=True)
    iv_basis = serializers.CharField()
    pcr_oi = serializers.FloatField(allow_null=True, help_text="Put OI / call OI over the whole chain.")
    pcr_volume = serializers.FloatField(allow_null=True)
    max_pain = serializers.CharField(allow_null=True)
    smile = SmilePointSerializer(many=True)
    strikes = ChainRowSerializer(many=True)


class MoneynessQuerySerializer(_TimeRange):
    underlying = serializers.CharField(max_length=64)
    expiry = serializers.DateField()
    option_side = serializers.ChoiceField(choices=["call", "put"])
    moneyness = serializers.CharField(max_length=8, default="ATM", help_text="ATM, ITM1..ITM99, OTM1..OTM99.")
    metric = serializers.ChoiceField(choices=list(METRICS))
    resolution = serializers.CharField(max_length=10, default="5")


class MoneynessPointSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    spot = serializers.CharField()
    strike = serializers.CharField(allow_null=True)
    symbol = serializers.CharField(allow_null=True)
    price = serializers.CharField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    reason = serializers.CharField(allow_null=True)


class MoneynessSeriesSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    option_side = serializers.CharField()
    moneyness = serializers.CharField()
    metric = serializers.CharField()
    metric_unit = serializers.CharField(allow_null=True)
    resolution = serializers.CharField()
    model = serializers.CharField()
    points = MoneynessPointSerializer(many=True)


class SignalsQuerySerializer(_TimeRange):
    underlying = serializers.CharField(max_length=64)
    resolution = serializers.CharField(max_length=10, default="15")
    contract = serializers.CharField(max_length=64, required=False, help_text="A future of the underlying; default the front month.")
    threshold_percent = _Finite(required=False, min_value=0.0, max_value=100.0, help_text="Moves under it are neutral.")


class SignalIntervalSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    from_time = serializers.DateTimeField()
    close = serializers.CharField()
    price_change = serializers.CharField()
    price_change_percent = serializers.FloatField(allow_null=True)
    open_interest = serializers.CharField()
    oi_change = serializers.CharField()
    oi_change_percent = serializers.FloatField(allow_null=True)
    signal = serializers.ChoiceField(choices=["long_buildup", "short_buildup", "long_unwinding", "short_covering", "neutral"])


class SignalsSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    contract = serializers.CharField()
    resolution = serializers.CharField()
    threshold_percent = serializers.FloatField()
    bars = serializers.IntegerField()
    bars_without_open_interest = serializers.IntegerField()
    intervals = SignalIntervalSerializer(many=True)


class RolloverQuerySerializer(serializers.Serializer):
    underlying = serializers.CharField(max_length=64)


class RolloverContractSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    expiry = serializers.DateField(allow_null=True)
    expiry_time = serializers.DateTimeField()
    days_to_expiry = serializers.FloatField(allow_null=True)
    last = serializers.CharField(allow_null=True)
    open_interest = serializers.CharField(allow_null=True)
    oi_share_percent = serializers.FloatField(allow_null=True)
    basis = serializers.FloatField(allow_null=True)
    basis_percent = serializers.FloatField(allow_null=True)
    annualised_basis_percent = serializers.FloatField(allow_null=True)
    cost_of_carry = serializers.FloatField(allow_null=True, help_text="ln(F/S) / T, continuous per year.")
    reason = serializers.CharField(allow_null=True)


class RolloverSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    spot = serializers.CharField(allow_null=True)
    time = serializers.DateTimeField()
    rollover_percent = serializers.FloatField(allow_null=True, help_text="Next expiry's share of near + next OI.")
    calendar_spread = serializers.FloatField(allow_null=True, help_text="Next - near futures price.")
    contracts = RolloverContractSerializer(many=True)
