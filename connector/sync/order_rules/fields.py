"""The Order and OrderItem fields the connector reads, declared once: the SELECT is built from
them and the change fingerprint hashes the billed ones, so a field added here is in both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Billing content: the rules read these, and the change fingerprint hashes them (with the mapping's
# payment-term, quantity and unit-price fields). AccountId is left out on purpose: a merge in
# Salesforce re-parents the loser's Orders to the survivor, and their subscriptions rightly stay
# with the loser's Customer; that is not an edit of the Order's billing content.
BILLED_ORDER_FIELDS = ("CurrencyIsoCode", "EffectiveDate", "EndDate", "Type")
BILLED_LINE_FIELDS = (
    "Product2Id",
    "PricebookEntryId",
    "ServiceDate",
    "EndDate",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingType__c",
    "SBQQ__BillingFrequency__c",
    "SBQQ__SubscriptionTerm__c",
    "SBQQ__SubscriptionType__c",
)
# Read too, for names, links and messages; not billing content of the Order itself.
# ContractId and the Renewal's Opportunity tie an Order to its contract's life (connector.sync.contracts).
ORDER_CONTEXT_FIELDS = (
    "OrderNumber",
    "AccountId",
    "Account.Name",
    "ContractId",
    "Opportunity.SBQQ__RenewedContract__c",
)
LINE_CONTEXT_FIELDS = (
    "Id",
    "OrderItemNumber",
    "Product2.Name",
    "Product2.Description",
    "PricebookEntry.UnitPrice",
    "PricebookEntry.CurrencyIsoCode",
    "SBQQ__RevisedOrderProduct__c",  # an Amendment line: the line first sold that it changes
)
# MDQ segments (order_rules.segments): billed, but hashed only on lines that carry a segment key, so
# Orders synced before segments were read keep their fingerprint.
SEGMENT_LINE_FIELDS = (
    "SBQQ__SegmentKey__c",
    "SBQQ__SegmentIndex__c",
    "SBQQ__SegmentLabel__c",
    "SBQQ__DimensionType__c",
)
ORDER_FIELDS = BILLED_ORDER_FIELDS + ORDER_CONTEXT_FIELDS
LINE_FIELDS = BILLED_LINE_FIELDS + LINE_CONTEXT_FIELDS + SEGMENT_LINE_FIELDS


def order_lines(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The OrderItems of an Order row (a subquery result or a plain list)."""
    children = order.get("OrderItems")
    if not children:
        return []
    if isinstance(children, Mapping):
        return list(children.get("records") or [])
    return list(children)
