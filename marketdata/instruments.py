"""Broker instruments: creating them per venue (``VENUE:CODE``) and moving a
simulated instrument aside when a broker's claims its name.

The rules (names, venues, ticks) are ``marketdata.venues``. Rows of other
apps that name an instrument by its symbol rather than by key (the OMS's
orders, deals and positions; the paper venue's book) are renamed by the
movers those apps register (``register_symbol_mover``): marketdata imports
neither. Bars and daily bars follow by key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from core.exceptions import Conflict, InvalidInput
from marketdata.instrument_cache import instruments_changed
from marketdata.models import Bar, DailyBar, Instrument
from marketdata.quotes import quote_get, quote_store, quotes_forget
from marketdata.services import INSTRUMENT_FIELDS, instrument_upsert
from marketdata.venues import SIM, Venue, code_problem, moved_aside_symbol, symbol_compose, venue_get

logger = logging.getLogger(__name__)

#: ``mover(old_symbol, new_symbol)`` renames its app's rows inside the
#: caller's transaction and says how many of each it moved.
SymbolMover = Callable[[str, str], Mapping[str, int]]
_movers: dict[str, SymbolMover] = {}

#: Most codes one import takes.
MAX_IMPORT = 1000
NAME_MAX = Instrument._meta.get_field("description").max_length or 200


def register_symbol_mover(name: str, mover: SymbolMover) -> None:
    """Called by apps that keep symbols as text (their ``AppConfig.ready()``)."""
    _movers[name] = mover


@dataclass(frozen=True)
class MovedAside:
    """A simulated instrument renamed for a broker's: its rows moved with it."""

    old_symbol: str
    new_symbol: str
    moved: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self.moved.items()) if n)
        return f"The simulated {self.old_symbol} was moved aside to {self.new_symbol}" + (f" with {counts}." if counts else ".")


@dataclass
class InstrumentImport:
    """What an import did: symbols created and updated, simulated ones moved aside."""

    venue: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    moved_aside: list[MovedAside] = field(default_factory=list)

    def messages(self) -> list[str]:
        lines = [moved.message() for moved in self.moved_aside]
        for label, symbols in (("Created", self.created), ("Updated", self.updated), ("Unchanged", self.unchanged)):
            if symbols:
                lines.append(f"{label}: {', '.join(symbols)}")
        return lines


# --- moving aside --------------------------------------------------------------------------------


def instrument_move_aside(*, symbol: str) -> MovedAside:
    """Rename the simulated instrument ``symbol`` to ``SIM:<symbol>``, with
    every row that names it by symbol (orders, deals, positions, the paper
    book), in one transaction; its bars follow by key. Its latest quote moves
    after commit, and the simulator and bar streams reload their per-symbol
    state (``instruments_version``), so nothing of it stays under the old name."""
    new_symbol = moved_aside_symbol(symbol)
    if len(new_symbol) > 64:
        raise Conflict(f"{symbol[:64]} cannot be moved aside: {new_symbol[:64]}... is too long.", code="instrument_name_taken")
    with transaction.atomic():
        instrument = Instrument.objects.select_for_update().filter(symbol=symbol).first()
        if instrument is None:
            raise InvalidInput(f"Unknown symbol '{symbol[:64]}'.", code="unknown_symbol")
        if instrument.venue != SIM:
            raise Conflict(
                f"{symbol} belongs to {instrument.venue}: only a simulated instrument is moved aside.", code="instrument_name_taken"
            )
        if Instrument.objects.filter(symbol=new_symbol).exists():
            raise Conflict(f"{symbol} cannot be moved aside: {new_symbol} exists already.", code="instrument_name_taken")
        params = dict(instrument.sim_params)
        if params and not params.get("seed_symbol"):
            params["seed_symbol"] = symbol  # the simulator keeps drawing the same prices for it
        Instrument.objects.filter(pk=instrument.pk).update(symbol=new_symbol, code=instrument.code or symbol, sim_params=params)
        moved: dict[str, int] = {
            "bars": Bar.objects.filter(instrument_id=instrument.pk).count(),
            "daily bars": DailyBar.objects.filter(instrument_id=instrument.pk).count(),
        }
        for _name, mover in sorted(_movers.items()):
            for what, n in mover(symbol, new_symbol).items():
                moved[what] = moved.get(what, 0) + n
        instruments_changed()
        transaction.on_commit(lambda: _quote_follow(symbol, new_symbol))
    result = MovedAside(old_symbol=symbol, new_symbol=new_symbol, moved=moved)
    logger.info("%s", result.message())
    return result


def _quote_follow(old: str, new: str) -> None:
    latest = quote_get(old)
    quotes_forget([old])
    if latest is not None:
        quote_store(dataclasses.replace(latest, symbol=new))


# --- creating per venue ----------------------------------------------------------------------------


def _venue_or_error(venue: str) -> Venue:
    try:
        found = venue_get(venue.strip().upper())
    except ValueError as exc:
        raise InvalidInput(str(exc), code="unknown_venue", fields={"venue": [str(exc)]}) from exc
    if found.name == SIM:
        raise InvalidInput(
            "SIM instruments are the simulator's, not imported.", code="unknown_venue", fields={"venue": ["Not a broker's venue."]}
        )
    return found


def _defaults(venue: Venue, code: str, name: str) -> dict[str, Any]:
    return {
        "description": name,
        "exchange": venue.name,
        "type": venue.instrument_type,
        "currency": venue.currency or "USD",
        "tick_size": venue.tick_size,
        "session": venue.session,
        "timezone": venue.timezone,
        "broker_codes": {venue.broker_kind: code},
        "sim_params": {},
        "venue": venue.name,
        "code": code,
        "quote_source": venue.broker_kind,
    }


def _ensure(venue: Venue, code: str, name: str, fields: Mapping[str, Any], result: InstrumentImport) -> Instrument:
    problem = code_problem(venue, code)
    if problem is not None:
        raise InvalidInput(f"{code[:64]!r}: {problem}", code="invalid_code", fields={"code": [problem]})
    if len(name) > NAME_MAX:
        raise InvalidInput(f"{code}: the name holds at most {NAME_MAX} characters.", fields={"name": [f"At most {NAME_MAX} characters."]})
    unknown = set(fields) - (INSTRUMENT_FIELDS - {"venue", "code", "quote_source"})
    if unknown:
        raise InvalidInput(fields={k: ["Unknown field."] for k in sorted(unknown)})
    symbol = symbol_compose(venue.name, code)
    with transaction.atomic():
        existing = Instrument.objects.select_for_update().filter(symbol=symbol).first()
        if existing is not None and existing.venue == SIM:
            result.moved_aside.append(instrument_move_aside(symbol=symbol))
            existing = None
        if existing is None:
            instrument = instrument_upsert(symbol=symbol, **{**_defaults(venue, code, name), **fields})
            result.created.append(symbol)
            return instrument
        if existing.venue != venue.name:  # a row written by hand under another venue's name
            raise Conflict(f"{symbol} exists in venue {existing.venue}.", code="instrument_name_taken")
        changes = dict(fields)
        if name and name != existing.description:
            changes["description"] = name
        changes = {k: v for k, v in changes.items() if getattr(existing, k) != v}
        if not changes:
            result.unchanged.append(symbol)
            return existing
        instrument = instrument_upsert(symbol=symbol, **changes)
        result.updated.append(symbol)
        return instrument


def instrument_ensure_for_venue(venue: str, code: str, *, name: str = "", **fields: Any) -> Instrument:
    """The instrument ``VENUE:CODE``, created when missing with the venue's
    defaults (currency, timezone, session, tick rule, quote source = the
    venue's broker, not simulated) and ``fields`` (``INSTRUMENT_FIELDS``);
    ``name`` becomes its description when given. A simulated instrument of
    that name is moved aside first (``instrument_move_aside``, logged);
    ``instruments_import_for_venue`` reports it. Used by the import commands
    and by the account sync for holdings found at the broker."""
    return _ensure(_venue_or_error(venue), code.strip(), name.strip(), fields, InstrumentImport(venue=venue))


def instruments_import_for_venue(*, venue: str, items: Iterable[tuple[str, str]], **fields: Any) -> InstrumentImport:
    """Ensure each ``(code, name)`` of ``venue`` (``instrument_ensure_for_venue``),
    all or none, and say what happened: created, updated, unchanged, and each
    simulated instrument moved aside."""
    found = _venue_or_error(venue)
    pairs = [(code.strip(), name.strip()) for code, name in items]
    if not pairs:
        raise InvalidInput("Give at least one code.", fields={"codes": ["Give at least one code."]})
    if len(pairs) > MAX_IMPORT:
        raise InvalidInput(f"At most {MAX_IMPORT} codes per import.", fields={"codes": [f"At most {MAX_IMPORT}."]})
    result = InstrumentImport(venue=found.name)
    with transaction.atomic():
        for code, name in dict(pairs).items():
            _ensure(found, code, name, fields, result)
    return result


# --- bulk: a broker's whole instrument master ----------------------------------------------------

BULK_BATCH = 2000
PROBLEMS_KEPT = 20


@dataclass(frozen=True)
class VenueItem:
    """One instrument of a broker's master: ``VENUE:CODE`` with its fields
    (``INSTRUMENT_FIELDS`` but venue/code/quote_source), and the symbol of
    its underlying (linked when that instrument exists)."""

    venue: str
    code: str
    name: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    underlying: str = ""


@dataclass
class BulkImport:
    """What a bulk import did, counted (a master holds 100,000 instruments)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    linked: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)  # the first few skipped rows, why
    by_venue: dict[str, int] = field(default_factory=dict)
    moved_aside: list[MovedAside] = field(default_factory=list)

    def skip(self, problem: str) -> None:
        self.skipped += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "linked": self.linked,
            "skipped": self.skipped,
            "problems": list(self.problems),
            "by_venue": dict(sorted(self.by_venue.items())),
            "moved_aside": [m.message() for m in self.moved_aside],
        }


# What the bulk import reads of an existing row: plain values (no model
# instances), ``underlying`` as its id.
_BULK_FIELDS = tuple(sorted(INSTRUMENT_FIELDS - {"venue", "code", "quote_source", "underlying"}))
_BULK_READ = ("id", "symbol", "venue", "underlying_id", *_BULK_FIELDS)


def _current(row: Mapping[str, Any], name: str) -> Any:
    return row["underlying_id"] if name == "underlying" else row[name]


def _wanted_value(name: str, value: Any) -> Any:
    return getattr(value, "pk", value) if name == "underlying" else value


def instruments_bulk_import(
    items: Iterable[VenueItem], *, progress: Callable[[int], object] | None = None, batch_size: int = BULK_BATCH
) -> BulkImport:
    """Create or update every item (``VENUE:CODE``) in bulk, in one
    transaction: existing rows read and written a batch at a time, new ones
    inserted a batch at a time, then underlyings linked. A simulated
    instrument holding a broker's name is moved aside first; a row that
    breaks the naming rules, or names an instrument of another venue, is
    skipped and counted. ``progress(n)`` is told the rows done so far.

    Instruments that are no one's derivative are written first, so a new
    derivative is inserted already pointing at its underlying (rather than
    inserted, then updated); an existing row is re-pointed only when its
    underlying changed, in one UPDATE per underlying."""
    result = BulkImport()
    venues: dict[str, Venue | None] = {}
    wanted: dict[str, VenueItem] = {}
    for item in items:
        name = item.venue.strip().upper()
        if name not in venues:
            try:
                venues[name] = _venue_or_error(name)
            except InvalidInput:
                venues[name] = None
        venue = venues[name]
        if venue is None:
            result.skip(f"{item.venue}:{item.code}: unknown venue")
            continue
        problem = code_problem(venue, item.code) or (f"name over {NAME_MAX} characters" if len(item.name) > NAME_MAX else None)
        unknown = set(item.fields) - (INSTRUMENT_FIELDS - {"venue", "code", "quote_source"})
        if problem or unknown:
            result.skip(f"{item.venue}:{item.code}: {problem or 'unknown fields ' + ', '.join(sorted(unknown))}")
            continue
        wanted[symbol_compose(venue.name, item.code)] = VenueItem(venue.name, item.code, item.name, item.fields, item.underlying)
    # Underlyings before their derivatives, in batches of their own (the master's order otherwise).
    plain = [symbol for symbol, item in wanted.items() if not item.underlying]
    derived = [symbol for symbol, item in wanted.items() if item.underlying]
    chunks = [group[start : start + batch_size] for group in (plain, derived) for start in range(0, len(group), batch_size)]
    # Only the columns the items set are compared: reading all of them costs as much as the import.
    given = {name for item in wanted.values() for name in item.fields} | {"description"}
    read = (*_BULK_READ[:4], *(name for name in _BULK_FIELDS if name in given))
    done = 0
    with transaction.atomic():
        targets = {item.underlying for item in wanted.values() if item.underlying}
        # The underlyings' ids as they stand; a simulated one this import moves
        # aside is known only once the broker's is written.
        ids = {
            symbol: pk
            for symbol, pk, venue_name in _read_in_batches(targets, ("symbol", "id", "venue"), batch_size)
            if not (venue_name == SIM and symbol in wanted)
        }
        relink: dict[int, list[int]] = {}  # underlying id -> existing rows to point at it
        later: dict[str, VenueItem] = {}  # linked once everything is written (the underlying was not yet)
        for chunk in chunks:
            existing = {row[1]: dict(zip(read, row, strict=True)) for row in _read_in_batches(chunk, read, batch_size)}
            fresh: list[dict[str, Any]] = []
            changed: list[int] = []
            changed_values: list[dict[str, Any]] = []
            for symbol in chunk:
                item = wanted[symbol]
                venue = venues[item.venue]
                assert venue is not None
                row = existing.get(symbol)
                if row is not None and row["venue"] == SIM:
                    result.moved_aside.append(instrument_move_aside(symbol=symbol))
                    row = None
                target = ids.get(item.underlying) if item.underlying else None
                if row is None:
                    values = {**_defaults(venue, item.code, item.name), **item.fields, "symbol": symbol}
                    if "underlying" in values:
                        values["underlying_id"] = _wanted_value("underlying", values.pop("underlying"))
                    if target is not None:
                        if values.get("underlying_id") != target:
                            values["underlying_id"] = target
                            result.linked += 1
                    elif item.underlying:
                        later[symbol] = item
                    fresh.append(values)
                    continue
                if item.underlying:
                    if target is None:
                        later[symbol] = item
                    elif target != row["id"] and row["underlying_id"] != target:
                        relink.setdefault(target, []).append(row["id"])
                if row["venue"] != venue.name:
                    result.skip(f"{symbol}: exists in venue {row['venue']}")
                    continue
                values = dict(item.fields)
                if item.name:
                    values["description"] = item.name
                diff = [k for k, v in values.items() if _current(row, k) != _wanted_value(k, v)]
                if not diff:
                    result.unchanged += 1
                else:
                    changed.append(row["id"])
                    changed_values.append({k: values[k] for k in diff})
                result.by_venue[venue.name] = result.by_venue.get(venue.name, 0) + 1
            if fresh:
                _insert_rows(fresh)
                result.created += len(fresh)
                for values in fresh:
                    result.by_venue[values["venue"]] = result.by_venue.get(values["venue"], 0) + 1
                # The new underlyings' ids, for the derivatives of the batches to come.
                wanted_ids = [values["symbol"] for values in fresh if values["symbol"] in targets]
                ids.update(_read_in_batches(wanted_ids, ("symbol", "id"), batch_size))
            if changed:
                _update_grouped(changed, changed_values)
                result.updated += len(changed)
            done += len(chunk)
            if progress is not None:
                progress(done)
        for target, pks in relink.items():
            for start in range(0, len(pks), batch_size):
                result.linked += Instrument.objects.filter(pk__in=pks[start : start + batch_size]).update(underlying_id=target)
        result.linked += _underlyings_link(later, batch_size)
        instruments_changed()
    return result


_UNSET = object()


def _insert_rows(rows: list[dict[str, Any]]) -> None:
    """INSERT new instruments (field name -> value; the model's defaults for
    the rest) with one statement executed for all rows (PostgreSQL: one COPY). What ``bulk_create``
    does, less its per-row, per-field work: each field's database value is
    prepared once per distinct value (a master repeats its currency, tick
    size, segment... on every row), and no model instance is built."""
    connection = connections[router.db_for_write(Instrument)]
    fields = [f for f in Instrument._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    prepared: list[dict[Any, Any]] = [{} for _ in fields]

    def prep(index: int, value: Any) -> Any:
        cache = prepared[index]
        try:
            hit = cache.get((type(value), value), _UNSET)
        except TypeError:  # a dict or list (broker codes): prepared each time
            return fields[index].get_db_prep_save(value, connection)
        if hit is _UNSET:
            hit = cache[(type(value), value)] = fields[index].get_db_prep_save(value, connection)
        return hit

    plan: list[tuple[int, str, bool]] = []  # (index, attname, auto timestamp)
    for index, f in enumerate(fields):
        plan.append((index, f.attname, bool(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))))
    params: list[tuple[Any, ...]] = []
    for values in rows:
        row = []
        for index, attname, stamp in plan:
            value = now if stamp else values[attname] if attname in values else fields[index].get_default()
            row.append(prep(index, value))
        params.append(tuple(row))
    quote = connection.ops.quote_name
    table = quote(Instrument._meta.db_table)
    columns = ", ".join(quote(f.attname if f.column is None else f.column) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: rows streamed in one command, no statement per row.
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for prepared_row in params:
                    copy.write_row(prepared_row)
            return
        sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 - our own names
        cursor.executemany(sql, params)


def _read_in_batches(symbols: Iterable[str], columns: tuple[str, ...], batch_size: int) -> list[tuple[Any, ...]]:
    """``columns`` of the instruments named ``symbols``, a batch of symbols per query."""
    names = list(symbols)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(names), batch_size):
        rows.extend(Instrument.objects.filter(symbol__in=names[start : start + batch_size]).values_list(*columns))
    return rows


def _update_grouped(pks: list[int], values: list[dict[str, Any]]) -> None:
    """One UPDATE per distinct set of new values (a re-listing changes many
    rows the same way), rather than a CASE per row."""
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for pk, changes in zip(pks, values, strict=True):
        key = json.dumps(changes, sort_keys=True, default=str)
        groups.setdefault(key, (changes, []))[1].append(pk)
    now = timezone.now()
    for changes, ids in groups.values():
        for start in range(0, len(ids), BULK_BATCH):
            Instrument.objects.filter(pk__in=ids[start : start + BULK_BATCH]).update(**changes, updated_at=now)


def _underlyings_link(wanted: Mapping[str, VenueItem], batch_size: int) -> int:
    """Point each item's instrument at its underlying's (where both exist); the count changed."""
    wants = {symbol: item.underlying for symbol, item in wanted.items() if item.underlying}
    if not wants:
        return 0
    targets = sorted(set(wants.values()))
    ids: dict[str, int] = {}
    for start in range(0, len(targets), batch_size):
        ids.update(Instrument.objects.filter(symbol__in=targets[start : start + batch_size]).values_list("symbol", "id"))
    linked = 0
    symbols = sorted(wants)
    for start in range(0, len(symbols), batch_size):
        chunk = symbols[start : start + batch_size]
        by_target: dict[int, list[int]] = {}
        for pk, symbol, current in Instrument.objects.filter(symbol__in=chunk).values_list("id", "symbol", "underlying_id"):
            target = ids.get(wants[symbol])
            if target is not None and target != pk and current != target:
                by_target.setdefault(target, []).append(pk)
        for target, pks in by_target.items():
            linked += Instrument.objects.filter(pk__in=pks).update(underlying_id=target)
    return linked


def code_and_name(text: str) -> tuple[str, str]:
    """``005930=Samsung Electronics`` -> ``("005930", "Samsung Electronics")``; a bare code has no name."""
    code, _, name = text.partition("=")
    return code.strip(), name.strip()


__all__ = [
    "MAX_IMPORT",
    "BulkImport",
    "VenueItem",
    "instruments_bulk_import",
    "InstrumentImport",
    "MovedAside",
    "code_and_name",
    "instrument_ensure_for_venue",
    "instrument_move_aside",
    "instruments_import_for_venue",
    "register_symbol_mover",
]
