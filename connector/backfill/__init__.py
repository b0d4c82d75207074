"""One-off backfill: every Account the mapping selects, then every activated Order, at the speed
Stripe's rate limit allows, resumable after any interruption (`cpq2stripe backfill`)."""
