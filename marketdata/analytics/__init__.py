"""F&O analytics as pure functions: option pricing and Greeks (Black-Scholes
with a continuous dividend yield, Black-76), implied volatility, option-chain
aggregates, order-book depth metrics and futures signals. No Django here:
``marketdata.fo`` feeds these from stored instruments, quotes and bars."""
