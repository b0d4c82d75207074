"""Local fakes of Salesforce and Stripe. Imports nothing from the rest of the connector."""
