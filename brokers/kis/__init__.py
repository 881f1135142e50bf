"""Korea Investment & Securities (KIS) Open API: domestic stocks, paper and live.

client.py speaks the REST protocol (token, TR calls, paging, errors);
adapter.py is the Broker; ws.py the WebSocket feed (trades, encrypted fill
notices); fake/ a protocol-faithful KIS server for tests and the demo."""
