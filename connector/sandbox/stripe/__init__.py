"""Fake Stripe API (test mode) for the demo, tests and benchmarks: `server.start_stripe`.

Layout: `server` (auth, rate limit, faults, idempotency, admin API) -> `forms` (nested form
decoding) -> `validation` (declarative parameter specs, Stripe's error codes and wording) ->
`resources/*` (customers, catalog, meters, payments, billing, account/events) over `store` (one
lock, objects kept as the JSON the API returns). `search` parses Stripe's query language subset.
Several accounts share the server: `accounts` picks one from the key and `Stripe-Context` header,
`sharing` keeps an Organization sharing group's customers (and cards) in step across its accounts.

Deliberate simplifications: no clock advances (periods are computed at creation, schedules never
move to the next phase, invoices are created paid/open at once), no webhooks (events are listable),
no taxes, discounts are accepted but not applied. Billing meters are objects (`recurring[meter]`
must name an active one) but meter events are only stored, never aggregated into invoices.
Customer address countries must be ISO 3166-1 alpha-2 codes (real Stripe has been seen accepting
free text there: this fake is stricter on purpose).
"""
