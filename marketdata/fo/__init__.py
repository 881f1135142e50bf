"""F&O analytics services: feed ``marketdata.analytics``' pure functions from
stored instruments, quotes and bars, and shape their answers for the API and
the ``chain:`` stream (Greeks and IV as JSON numbers, never NaN: null with a
reason; instrument prices as decimal strings)."""
