"""cpq2stripe: keeps Stripe Billing in step with Salesforce CPQ."""
